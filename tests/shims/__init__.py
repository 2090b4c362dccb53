"""interpkit patch on compiled fixtures: relink, copies, rebuild, wheel repair (integration)."""
