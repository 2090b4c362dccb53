"""The subinterpreters backend on real CPython 3.12/3.13 (integration)."""
