// ZonedConformance: see the files beside this one.
