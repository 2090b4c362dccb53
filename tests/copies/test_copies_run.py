"""`interpkit run --backend copies` on a torch.package model: torch cannot run in copies that
share one libtorch, and the command says why in one line (the serving child died, not the tool)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO_ROOT


@pytest.mark.torch
def test_run_backend_copies_names_the_cause_for_torch(tmp_path):
    archive = tmp_path / "example_mlp.pt"
    made = subprocess.run([sys.executable, str(REPO_ROOT / "fixtures" / "models" / "make_example_package.py"),
                           str(archive)], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    if made.returncode != 0:
        pytest.skip(f"cannot build the example archive ({made.stderr.strip()[-200:]})")
    done = subprocess.run([sys.executable, "-m", "interpkit", "run", str(archive), "-n", "2", "-k", "8",
                           "--backend", "copies"], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Key already registered with the same priority: PyInterpreterHooks" in lines[0]
