"""Hostile and corrupt inputs against the real CLI and probes (integration)."""
