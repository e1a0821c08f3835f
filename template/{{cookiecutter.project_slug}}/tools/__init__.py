"""Project tooling (image builds, helpers); run as ``python -m tools.<module>``."""
