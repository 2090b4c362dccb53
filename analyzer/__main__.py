"""`python -m analyzer` is `interpkit`."""
from analyzer.cli import entry

entry()
