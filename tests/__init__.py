"""Tests: one package per area; `pytest -m "not integration"` runs the unit tests only (see conftest.py)."""
