"""The serving benchmarks run end to end and print their tables and closing summary (nothing timed is asserted)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HAS_TORCH = __import__("importlib.util").util.find_spec("torch") is not None
pytestmark = [pytest.mark.torch, pytest.mark.slow,
              pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")]


def _bench(script: str, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / script), *args], capture_output=True,
                          text=True, timeout=600, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_runtime_scaling_model_section():
    lines = _bench("runtime_scaling.py", "--sections", "model", "--requests", "8", "--chunk", "2", "--repeat", "1")
    labels = [line[:28].strip() for line in lines]
    for label in ("1 interpreter", "2 interpreters (namespaces)", "2 threads, 1 interpreter", "2 processes"):
        assert label in labels
    assert re.match(r"summary: model: 2 interpreters \d+\.\d\dx 1 interpreter \(target >= 1\.80: (met|missed)\), "
                    r"\d+\.\d\dx 2 threads", lines[-1]), lines[-1]


def test_startup_one_interpreter():
    lines = _bench("startup.py", "--interpreters", "1")
    assert re.match(r"\s+1\s+\d+\.\d{3}\s+\d+\.\d{3}", lines[2]), lines[2]
    assert lines[-1].startswith("summary: interpreter 1 up with torch in ")


def test_weights_sharing_small_model():
    lines = _bench("weights_sharing.py", "--interpreters", "2", "--width", "256", "--layers", "2", "--requests", "2")
    labels = [line[:42].strip() for line in lines]
    for label in ("1 interpreter, weights mapped", "2 interpreters, weights mapped", "2 interpreters, weights copied",
                  "2 processes", "2 forked after preload (+ parent)", "2 forked after preload, gc.freeze()"):
        assert label in labels
    assert "answers vs 1 interpreter: equal (2 compared)" in lines[-2], lines[-2]
    summary = (r"summary: 2 interpreters \d+\.\d\dx 1 interpreter with weights mapped \(target <= 2\.00: "
               r"(met|missed); copied: \d+\.\d\dx\); vs 2 processes \d+\.\d\dx, vs 2 forked after preload")
    assert re.match(summary, lines[-1]), lines[-1]


def test_runtime_scaling_names_the_archive_it_serves(tmp_path):
    """Issue 24 (14): --archive X printed "example torch.package MLP" whatever X was."""
    archive = tmp_path / "served.pt"
    subprocess.run([sys.executable, str(REPO_ROOT / "fixtures/models/make_example_package.py"), str(archive)],
                   check=True, capture_output=True, timeout=600, cwd=REPO_ROOT)
    lines = _bench("runtime_scaling.py", "--sections", "model", "--requests", "8", "--chunk", "2", "--repeat", "1",
                   "--archive", str(archive))
    [model_line] = [line for line in lines if line.startswith("model: ")]
    assert model_line.startswith(f"model: torch.package archive {archive}, 8 requests"), model_line
