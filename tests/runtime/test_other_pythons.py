"""The namespaces runtime on CPython 3.12, 3.13, 3.14 and 3.15: the extension built for that
Python (native/namespaces/build.py), run in a child of it, with the guarantees it has on 3.11:
every interpreter its own copy, a timed-out request interrupted, clean teardown. numpy and
scipy from cp314 wheels, which refuse subinterpreters on 3.14, in 2 and 4 namespaces."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interpkit.native import pythons
from interpkit.native.namespaces.build import namespaces_runtime_for

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ("3.12", "3.13", "3.14", "3.15")

# Runs in a child of the target Python: N namespaces, each imports the modules and answers.
_CHILD = r"""
import json, sys
from interpkit.native.namespaces.build import activate
activate(sys.argv[1])
from interpkit.native import InterpreterTimeout, Runtime
job = json.loads(sys.argv[3])
out = {}
with Runtime(job["n"], libpython=sys.argv[2], sys_path=job["sys_path"], timeout=120) as rt:
    for i in range(job["n"]):
        rt.run(i, job["setup"])
    out["answers"] = [rt.eval(i, job["expression"]) for i in range(job["n"])]
    out["pids"] = rt.call_all("os:getpid")
    out["libpython_bases"] = [sorted(o.base for o in rt.namespace_libs(i) if "libpython" in o.path)
                              for i in range(job["n"])]
    try:
        rt.run(0, "while True:\n    pass\n", timeout=0.5)
    except InterpreterTimeout as exc:
        out["interrupted"] = "interrupted" in str(exc)
    out["after_interrupt"] = rt.eval(0, "6 * 7")
    rt.stop(0)
    out["after_stop"] = rt.eval(job["n"] - 1, job["expression"])
out["teardown"] = [record.outcome for record in rt.teardown]
print(json.dumps(out))
"""


@pytest.fixture
def every_python(named_pythons):
    return named_pythons(*VERSIONS)


def _in_namespaces(version: str, n: int, setup: str, expression: str, sys_path: list[str]) -> dict:
    runtime = namespaces_runtime_for(pythons.find_python(version))
    job = json.dumps({"n": n, "setup": setup, "expression": expression, "sys_path": sys_path})
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GLIBC_TUNABLES": "glibc.rtld.nns=16"}
    done = subprocess.run([*runtime.command(), "-c", _CHILD, str(runtime.extension), runtime.python.libpython, job],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("version", VERSIONS)
def test_runtime_on_that_python_keeps_interpreters_apart_and_tears_down(every_python, version):
    result = _in_namespaces(version, 3, "import sys, platform; state = []; state.append(1)",
                            "(platform.python_version(), len(state), id(state) != 0)", [])
    full = pythons.find_python(version).full_version
    assert result["answers"] == [[full, 1, True]] * 3
    assert len(set(result["pids"])) == 1                      # one process
    bases = [tuple(b) for b in result["libpython_bases"]]
    assert len(set(bases)) == 3                               # its own libpython each
    assert result["interrupted"] is True and result["after_interrupt"] == 42
    assert result["after_stop"] == [full, 1, True]
    assert result["teardown"] == ["finalized"] * 3


@pytest.mark.parametrize("n", [2, 4])
def test_numpy_and_scipy_in_namespaces_of_314(every_python, wheels_for, n):
    folder = str(wheels_for("3.14", ["numpy", "scipy"]))
    result = _in_namespaces(
        "3.14", n, "import numpy, scipy.linalg\na = numpy.arange(9.0).reshape(3, 3) + numpy.eye(3)",
        "(numpy.__version__, round(float(scipy.linalg.det(a)), 6), numpy.zeros(2).ctypes.data != 0)", [folder])
    versions = {answer[0] for answer in result["answers"]}
    assert len(versions) == 1 and [answer[1:] for answer in result["answers"]] == [[-5.0, True]] * n
    assert result["teardown"] == ["finalized"] * n


def _verify(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "interpkit", "verify", *args, "-f", "json"],
                          capture_output=True, text=True, timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def test_verify_runs_each_module_in_namespaces_of_its_python(tmp_path, every_python, built_fixtures):
    for version in ("3.11", *VERSIONS):
        python = sys.executable if version == "3.11" else every_python[version]
        built = built_fixtures("clean", python)
        shutil.copy2(built, tmp_path / built.name)
    data = _verify(str(tmp_path), "-n", "2")
    rows = {Path(row["path"]).name.split(".")[1]: row for row in data["results"]}
    assert sorted(rows) == ["cpython-311-x86_64-linux-gnu", "cpython-312-x86_64-linux-gnu",
                            "cpython-313-x86_64-linux-gnu", "cpython-314-x86_64-linux-gnu",
                            "cpython-315-x86_64-linux-gnu"]
    for tag, row in rows.items():
        assert row["python"].startswith(f"3.{tag.split('-')[1][1:]}."), (tag, row["python"])
        assert row["status"] == "ok" and row["agrees"] is True, (tag, row["message"])
        steps = [step["step"] for step in row["outcome"]["steps"]]
        assert "destroy" in steps and steps[-1] == "close", steps
        assert row["teardown"]["status"] == "ok", row["teardown"]


@pytest.mark.parametrize("n", [2, 4])
def test_numpy_loads_in_namespaces_where_subinterpreters_refuse_it(every_python, wheels_for, n):
    folder = wheels_for("3.14", ["numpy", "scipy"])
    binaries = [next((folder / "numpy" / "_core").glob("_multiarray_umath.*.so")),
                next((folder / "scipy" / "linalg").glob("_flapack.*.so"))]
    namespaces = _verify(*map(str, binaries), "-n", str(n))
    for row in namespaces["results"]:
        assert row["status"] == "ok" and row["python"].startswith("3.14."), (row["module"], row["message"])
        assert row["teardown"]["status"] == "ok"
    refused = _verify(*map(str, binaries), "-n", str(n), "--backend", "subinterpreters")
    for row in refused["results"]:
        assert row["status"] == "import_error", (row["module"], row["message"])
        assert "does not support loading in subinterpreters" in row["message"]


_LIMIT_CHILD = r"""
import sys
from interpkit.native.namespaces.build import activate
activate(sys.argv[1])
from interpkit.native import NamespaceLimitError, Runtime
try:
    Runtime(16, libpython=sys.argv[2])
except NamespaceLimitError as exc:
    print(exc)
"""


def test_namespace_limit_is_named_on_314(every_python):
    runtime = namespaces_runtime_for(pythons.find_python("3.14"))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GLIBC_TUNABLES": "glibc.rtld.nns=16"}
    done = subprocess.run([*runtime.command(), "-c", _LIMIT_CHILD, str(runtime.extension), runtime.python.libpython],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "at most 15 namespaced interpreters" in done.stdout and "glibc.rtld.nns=16" in done.stdout
