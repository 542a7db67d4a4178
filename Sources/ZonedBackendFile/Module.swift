// ZonedBackendFile: see the files beside this one.
