"""IK309: a file built for another CPython gets `n/a` for the in-process backends, which run the
Python interpkit runs on; that Python indeed cannot load it."""
from __future__ import annotations

import subprocess
import sys

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.core.findings import Backend, Verdict

_LOAD = r"""
import importlib.machinery as m, importlib.util as u, sys
path = sys.argv[1]
loader = m.ExtensionFileLoader("multi_phase_isolated", path)
try:
    u.module_from_spec(u.spec_from_file_location("multi_phase_isolated", path, loader=loader))
    print("loaded")
except Exception as exc:
    print("refused:", type(exc).__name__)
"""


def _result(path):
    [result] = analyze_elf_files([path], Config(), closure=False)
    return result


def test_file_for_another_cpython_is_not_applicable_to_in_process_backends(built_fixtures, python_for):
    host = "%d.%d" % sys.version_info[:2]
    other = "3.13" if host != "3.13" else "3.12"
    path = built_fixtures("multi_phase_isolated", python_for(other))
    result = _result(path)
    [finding] = [f for f in result.findings if f.code == "IK309"]
    assert dict(finding.data) == {"built_for": other, "host": host}
    assert result.verdicts[Backend.NAMESPACES] is Verdict.NOT_APPLICABLE
    assert result.verdicts[Backend.COPIES] is Verdict.NOT_APPLICABLE
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.OK   # still judged by its declaration
    assert result.to_json()["verdicts"]["namespaces"] == "n/a"
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().startswith("refused") or proc.returncode != 0, proc.stdout


def test_file_for_the_running_cpython_is_judged(built_fixtures):
    result = _result(built_fixtures("multi_phase_isolated"))
    assert "IK309" not in {f.code for f in result.findings}
    assert result.verdicts[Backend.NAMESPACES] is Verdict.OK
