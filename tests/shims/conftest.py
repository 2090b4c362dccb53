"""Fixtures for the shim tests (helpers live in shim_helpers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fixture_copy(built_fixtures, tmp_path):
    """fixture_copy(name) -> a private copy of the built fixture (the cache is never patched)."""
    import shutil

    def make(name: str, folder: Path | None = None) -> Path:
        built = built_fixtures(name)
        target_dir = folder or tmp_path / "in"
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / built.name
        shutil.copyfile(built, target)
        target.chmod(0o755)
        return target

    return make
