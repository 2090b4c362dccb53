"""Verification: predictions checked against the real runtime, one extension (`verify.py`) or a
whole environment (`corpus.py`)."""
