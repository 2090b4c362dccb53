"""The rule registry: every rule's record, docs and purity (unit)."""
