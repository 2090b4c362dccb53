"""Import layers and cycles of the source tree (unit)."""
