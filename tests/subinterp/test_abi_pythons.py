"""Each extension is verified under a Python of its own ABI: cp312…cp315 by the file's tag, abi3
from its wheel's floor up; a module is skipped only when no such Python exists, and the reason
names it. Real 3.14/3.15 (fixtures/pythons.py), real cp314/cp315 wheels from PyPI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interpkit.analyzer.plumbing.modules import abi3_floor
from interpkit.native import pythons

TAGS = {"3.12": "312", "3.13": "313", "3.14": "314", "3.15": "315"}


@pytest.fixture
def every_python(named_pythons):
    return named_pythons(*TAGS)


def _verify(*args: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-m", "interpkit", "verify", *args, "--backend", "subinterpreters",
                           "-f", "json"], capture_output=True, text=True, timeout=900, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def _speedups(folder: Path) -> Path:
    [found] = (folder / "markupsafe").glob("_speedups.*.so")
    return found


def test_discovery_finds_the_wrappers_and_the_public_api(every_python):
    found, _ = pythons.discover_pythons()
    by_version = {info.short_version: info for info in found}
    for version in ("3.14", "3.15"):
        info = by_version[version]
        assert info.executable == Path(every_python[version])  # the wrapper, which starts by itself
        assert info.subinterpreter_api == "concurrent.interpreters"
        assert info.soabi == f"cpython-{TAGS[version]}-x86_64-linux-gnu" and info.shared_libpython
    assert by_version["3.13"].subinterpreter_api == "_interpreters"
    assert by_version["3.12"].subinterpreter_api == "_xxsubinterpreters"


def test_each_module_runs_under_its_own_python(tmp_path, every_python, wheels_for, built_fixtures):
    cp314 = wheels_for("3.14", ["markupsafe", "orjson"])
    cp315 = wheels_for("3.15", ["markupsafe"])
    [orjson] = (cp314 / "orjson").glob("orjson.*.so")
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    for version in ("3.12", "3.13", "3.14", "3.15"):  # the clean fixture for each Python, one folder
        built = built_fixtures("clean", every_python[version])
        shutil.copy2(built, fixtures / built.name)
    data = _verify(str(_speedups(cp314)), str(orjson), str(_speedups(cp315)), str(fixtures), "-n", "2")
    rows = {(row["module"], Path(row["path"]).name): row for row in data["results"]}
    assert len(rows) == 7
    for (module, name), row in rows.items():
        tag = name.split(".")[-2].split("-")[1]
        assert row["python"].startswith(f"3.{tag[1:]}."), (name, row["python"])
        assert row["status"] in ("ok", "import_error"), (name, row["message"])
    assert rows[("markupsafe._speedups", _speedups(cp314).name)]["status"] == "ok"
    assert rows[("markupsafe._speedups", _speedups(cp315).name)]["status"] == "ok"
    refused = rows[("orjson.orjson", orjson.name)]
    assert refused["status"] == "import_error"
    assert "does not support loading in subinterpreters" in refused["message"]
    for version in ("3.14", "3.15"):  # every step of today's probe ran, teardown included
        row = rows[("clean", f"clean.cpython-{TAGS[version]}-x86_64-linux-gnu.so")]
        steps = [step["step"] for step in row["outcome"]["steps"]]
        assert steps == ["create", "create", "import", "import", "smoke", "smoke", "shared_state",
                         "destroy", "use_after_destroy", "destroy"], steps
        assert all(step["ok"] for step in row["outcome"]["steps"])
        assert row["teardown"]["status"] == "ok"


def test_missing_python_is_named_in_the_skip(tmp_path, every_python, wheels_for):
    cp315 = wheels_for("3.15", ["markupsafe"])
    # Only 3.14 is offered: no pyenv, no pythonX.Y on PATH.
    env = {**os.environ, pythons.ENV_VAR: every_python["3.14"], "PATH": str(tmp_path)}
    data = _verify(str(_speedups(cp315)), env=env)
    [row] = data["results"]
    assert row["status"] == "skipped" and row["python"] is None
    assert row["message"].startswith("needs CPython 3.15 (built for cpython-315-x86_64-linux-gnu)")
    assert every_python["3.14"] in row["message"]  # the candidates tried are listed


def test_abi3_runs_from_its_floor_up(every_python, wheels_for):
    folder = wheels_for("3.14", ["bcrypt"])
    [binary] = (folder / "bcrypt").glob("_bcrypt.abi3.so")
    floor = abi3_floor(binary)
    assert floor is not None and floor <= (3, 12)
    # The preferred Python when it fits; the oldest that fits when it does not.
    assert pythons.python_for_abi("abi3", floor=floor).short_version == "3.13"
    assert pythons.python_for_abi("abi3", floor=floor, preferred="3.15").short_version == "3.15"
    assert pythons.python_for_abi("abi3", floor=(3, 14), preferred="3.13").short_version == "3.14"
    with pytest.raises(Exception, match=r"needs CPython 3.16 or newer \(abi3 from 3.16\)"):
        pythons.python_for_abi("abi3", floor=(3, 16))
