"""`scan --probe`: a declaration the binary does not show is read by calling the entry point in a
child of the CPython the file is built for, and the verdict agrees with that CPython's import."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.elf.test_declarations import _cpython_says


def _scan(path, *extra):
    proc = subprocess.run([sys.executable, "-m", "interpkit", "scan", "--no-closure", "--format", "json",
                           "--exit-zero", *extra, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    [file] = json.loads(proc.stdout)["files"]
    return file


def test_probe_settles_a_table_filled_by_a_helper(built_fixtures, python_for):
    python = python_for("3.13")
    path = built_fixtures("runtime_slots", python)
    static = _scan(path)
    assert static["verdicts"]["subinterpreters"] == "unknown"
    assert "IK103" in {f["code"] for f in static["findings"]}
    probed = _scan(path, "--probe")
    observed = probed["facts"]["declaration_probe"]["observed"]
    assert observed == {"PyInit_runtime_slots": {"declared": "per-interpreter-gil-supported"}}
    assert probed["verdicts"]["subinterpreters"] == "ok"
    [finding] = [f for f in probed["findings"] if f["code"] == "IK103"]
    assert finding["message"].startswith("observed by calling `PyInit_runtime_slots`")
    assert _cpython_says(python, path, "runtime_slots") == "ok"
