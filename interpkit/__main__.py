"""`python -m interpkit` is the `interpkit` command."""
from interpkit.cli import entry

entry()
