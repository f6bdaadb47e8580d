"""The log analyses with the API msMemScope's users know (analyzers): a layer over the
pipeline, for scripts."""
