"""`scan --trace`: the model imported in a sandboxed child (`child.py`), what loaded read back
(`trace.py`)."""
