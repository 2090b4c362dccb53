"""IK309: a file built for another CPython gets `n/a` for the copies backend, which runs the
Python interpkit runs on (that Python indeed cannot load it), and for the namespaces backend
unless a CPython of its version is found here to build the namespaces runtime for."""
from __future__ import annotations

import json
import os
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


def test_file_for_another_cpython_is_not_applicable_to_copies(built_fixtures, python_for):
    """A CPython of the file's version is found (python_for): the namespaces runtime is built
    for it, so the namespaces verdict is judged like any other; copies stay n/a."""
    host = "%d.%d" % sys.version_info[:2]
    other = "3.13" if host != "3.13" else "3.12"
    path = built_fixtures("multi_phase_isolated", python_for(other))
    result = _result(path)
    [finding] = [f for f in result.findings if f.code == "IK309"]
    data = dict(finding.data)
    assert (data["built_for"], data["host"]) == (other, host) and data["namespaces_python"]
    assert result.verdicts[Backend.COPIES] is Verdict.NOT_APPLICABLE
    assert result.verdicts[Backend.NAMESPACES] is Verdict.OK       # judged: it runs in namespaces of that Python
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.OK   # still judged by its declaration
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().startswith("refused") or proc.returncode != 0, proc.stdout


_JUDGE = r"""
import json, sys
from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
[result] = analyze_elf_files([sys.argv[1]], Config(), closure=False)
print(json.dumps(result.to_json()["verdicts"]))
"""


def test_without_a_python_of_its_version_namespaces_is_not_applicable_too(built_fixtures, python_for, tmp_path):
    """No CPython of the file's version to be found (no PATH, no INTERPKIT_PYTHONS, no project
    file): neither in-process runtime can load it, both verdicts are n/a."""
    host = "%d.%d" % sys.version_info[:2]
    other = "3.13" if host != "3.13" else "3.12"
    path = built_fixtures("multi_phase_isolated", python_for(other))
    env = {**os.environ, "PATH": str(tmp_path), "INTERPKIT_PYTHONS": "", "INTERPKIT_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", _JUDGE, str(path)], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    verdicts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert verdicts["namespaces"] == "n/a" and verdicts["copies"] == "n/a", verdicts
    assert verdicts["subinterpreters"] == "ok"


def test_file_for_the_running_cpython_is_judged(built_fixtures):
    result = _result(built_fixtures("multi_phase_isolated"))
    assert "IK309" not in {f.code for f in result.findings}
    assert result.verdicts[Backend.NAMESPACES] is Verdict.OK
