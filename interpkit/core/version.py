"""The package version, at the bottom layer so reports (analyzer) can name it without importing
the top-level package (which imports the scan driver). pyproject.toml carries the same number."""
VERSION = "0.1.0"
