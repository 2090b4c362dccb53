"""IK106: guards no slot shows, found by their message, and what they do to legacy (shared-GIL)
subinterpreters and to a second import, checked with CPython 3.13 itself."""
from __future__ import annotations

import subprocess

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.core.findings import Backend, Verdict

_SECOND_LOADS = r"""
import _interpreters, sys, importlib
sys.path.insert(0, sys.argv[1])
import once_per_process                                   # the first load in the process: fine
del sys.modules["once_per_process"]
try:
    importlib.import_module("once_per_process")
    print("reimport ok")
except ImportError as exc:
    print("reimport refused:", exc)
legacy = _interpreters.create("legacy")
err = _interpreters.exec(legacy, f"import sys; sys.path.insert(0, {sys.argv[1]!r}); import once_per_process")
print("legacy ok" if err is None else "legacy refused: " + err.msg)
"""


def test_once_per_process_guard(built_fixtures, python_for):
    python = python_for("3.13")
    path = built_fixtures("once_per_process", python)
    [result] = analyze_elf_files([path], Config(), closure=False)
    [finding] = [f for f in result.findings if f.code == "IK106"]
    data = dict(finding.data)
    assert data["guard"] == "once-per-process"
    assert (data["legacy_subinterpreters"], data["second_import"]) == ("fail", "fail")
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.FAIL
    proc = subprocess.run([python, "-c", _SECOND_LOADS, str(path.parent)], capture_output=True, text=True,
                          timeout=120)
    lines = proc.stdout.splitlines()
    assert lines[0] == "reimport refused: cannot load module more than once per process", proc.stderr[-300:]
    assert lines[1].startswith("legacy refused") and "more than once per process" in lines[1]
