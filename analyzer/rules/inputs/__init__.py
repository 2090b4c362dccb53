"""IK9xx: inputs that cannot be read at all (a Python file that does not parse)."""
