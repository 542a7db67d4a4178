// ZonedBackendKernel: see the files beside this one.
