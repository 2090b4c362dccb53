"""The command line end to end: `python -m interpkit` in a child process (integration)."""
