"""Rule modules, one per hazard, in one folder per family; analyzer/registry.py is their only loader."""
