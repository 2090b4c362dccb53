"""IK1xx-IK3xx: rules over one ELF file's facts (init kind, process-global state, linkage)."""
