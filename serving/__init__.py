"""Running a model: generation backends, KServe manifests, and (later) the local server."""
