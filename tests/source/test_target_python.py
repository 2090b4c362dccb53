"""A scanned tree is judged for the Python it is built for (analyzer/source/target_python.py).

Real cp314 wheels (numpy and tifffile, a pure-Python package that imports it) scanned by
interpkit on the running Python: the imports resolve as CPython 3.14 itself resolves them
(asked in a real 3.14 child), and nothing of the running Python's standard library or
site-packages reaches the report.
"""
from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.scan import scan_paths

pytestmark = pytest.mark.integration


def _running_python_folders() -> list[str]:
    """Every folder of the scanning Python's own files: stdlib, lib-dynload, site-packages."""
    paths = sysconfig.get_paths()
    folders = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    folders |= {os.path.realpath(p) for p in site.getsitepackages()}
    folders |= {os.path.realpath(p) for p in sys.path if p.endswith(("lib-dynload", "site-packages"))}
    return sorted(f + os.sep for f in folders)


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _leaks(report_json: dict) -> list[str]:
    folders = _running_python_folders()
    return [s for s in _strings(report_json) if any(f in s for f in folders)]


def _origins_in(python: str, folder: Path, names: list[str]) -> dict[str, str | None]:
    """What `python` itself finds for each top-level name with `folder` on its path (find_spec
    of a top-level name imports nothing)."""
    code = ("import importlib.util, json, os, sys\n"
            "out = {}\n"
            "for name in json.loads(sys.argv[1]):\n"
            "    spec = importlib.util.find_spec(name)\n"
            "    out[name] = None if spec is None else (os.path.realpath(spec.origin) if spec.has_location else '')\n"
            "print(json.dumps(out))\n")
    done = subprocess.run([python, "-c", code, json.dumps(names)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(folder)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cp314_tree(wheels_for):
    return wheels_for("3.14", ["numpy", "tifffile"])


def test_cp314_tree_resolves_as_314_does(cp314_tree, named_pythons):
    python = named_pythons("3.14")["3.14"]
    report = scan_paths([cp314_tree], cache=False).to_json()

    import jsonschema

    from interpkit.analyzer.report.json import load_schema

    jsonschema.validate(report, load_schema())
    target = report["target_python"]
    assert (target["version"], target["found_by"]) == ("3.14", "extension tags")
    assert Path(target["executable"]).resolve() == Path(python).resolve()
    assert _leaks(report) == []

    modules = {m["name"]: m for m in report["imports"]["modules"]}
    # numpy's core extension carries 3.14's suffix: found only with that Python's suffixes
    core = modules["numpy._core._multiarray_umath"]
    assert core["kind"] == "extension" and core["path"].endswith(".cpython-314-x86_64-linux-gnu.so")
    assert modules["numpy"]["local"] and modules["tifffile"]["local"]
    # every top-level module outside the tree (and the tree's two packages) resolves to the file
    # 3.14 itself would import, or to none (the tree's loose test files are entries of their own)
    tops = sorted(name for name in modules if "." not in name
                  and (not modules[name]["local"] or name in ("numpy", "tifffile")))
    assert len(tops) > 30
    truth = _origins_in(python, cp314_tree, tops)
    disagree = {}
    for name in tops:
        node, real = modules[name], truth[name]
        ours = os.path.realpath(node["path"]) if "path" in node else ("" if node["kind"] in ("namespace", "stdlib") else None)
        if real is None:
            if node["kind"] != "missing":
                disagree[name] = (node["kind"], ours, real)
        elif real and ours != real:
            disagree[name] = (node["kind"], ours, real)
    assert disagree == {}
    # 3.14's own lib-dynload modules are its standard library, test modules included
    dynload = [m for m in modules.values() if "/lib-dynload/" in m.get("path", "")]
    assert dynload and all(m["kind"] == "stdlib" and ".cpython-314-" in m["path"] for m in dynload)


def test_site_packages_layout_names_the_target(tmp_path, named_pythons):
    named_pythons("3.14")
    package = tmp_path / "lib" / "python3.14" / "site-packages" / "plainpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import json\nimport math\nimport _testbuffer\n")
    report = scan_paths([package.parent], cache=False).to_json()
    assert (report["target_python"]["version"], report["target_python"]["found_by"]) == ("3.14", "layout")
    modules = {m["name"]: m for m in report["imports"]["modules"]}
    assert "/python3.14/" in modules["json"]["path"] and modules["json"]["kind"] == "stdlib"
    assert modules["_testbuffer"]["kind"] == "stdlib"
    assert _leaks(report) == []


def test_without_a_target_the_running_python_decides(tmp_path):
    (tmp_path / "model.py").write_text("import json\n")
    report = scan_paths([tmp_path / "model.py"], cache=False).to_json()
    assert "target_python" not in report
    modules = {m["name"]: m for m in report["imports"]["modules"]}
    assert Path(modules["json"]["path"]).resolve().parent.parent == Path(sysconfig.get_paths()["stdlib"]).resolve()


def _interpkit(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "interpkit", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_python_option_names_the_target(tmp_path, named_pythons):
    python = named_pythons("3.14")["3.14"]
    (tmp_path / "model.py").write_text("import json\n")
    out = tmp_path / "report.json"
    done = _interpkit("scan", tmp_path / "model.py", "--python", "3.14", "--format", "json", "-o", out)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["target_python"]["found_by"] == "--python"
    assert Path(report["target_python"]["executable"]).resolve() == Path(python).resolve()
    modules = {m["name"]: m for m in report["imports"]["modules"]}
    assert "/python3.14/" in modules["json"]["path"]
    table = _interpkit("scan", tmp_path / "model.py", "--python", "3.14", "--no-progress")
    assert f"judged for CPython 3.14 ({report['target_python']['executable']}; from --python)" in table.stdout


def test_pyproject_python_key_names_the_target(tmp_path, named_pythons):
    named_pythons("3.14")
    (tmp_path / "pyproject.toml").write_text('[tool.interpkit]\npython = "3.14"\n')
    (tmp_path / "model.py").write_text("import json\n")
    out = tmp_path / "report.json"
    done = _interpkit("scan", tmp_path / "model.py", "--format", "json", "-o", out)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert json.loads(out.read_text())["target_python"]["version"] == "3.14"


@pytest.mark.parametrize("wanted", ["/nonexistent/bin/python3.14", "3.99", "three"])
def test_python_option_without_that_python_is_one_line_exit_2(tmp_path, wanted):
    (tmp_path / "model.py").write_text("import json\n")
    done = _interpkit("scan", tmp_path / "model.py", "--python", wanted)
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "--python" in lines[0]


def test_a_version_no_python_here_has_keeps_our_files_out(tmp_path):
    """Built for a CPython this machine lacks: the tree alone is the search path, the stdlib is
    known by name, and the report says why no interpreter was asked."""
    package = tmp_path / "lib" / "python3.99" / "site-packages" / "plainpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import json\nimport pytest\nfrom . import helper\n")
    (package / "helper.py").write_text("import os\n")
    report = scan_paths([package.parent], cache=False).to_json()
    target = report["target_python"]
    assert (target["version"], target["executable"], target["found_by"]) == ("3.99", None, "layout")
    assert "3.99" in target["reason"]
    modules = {m["name"]: m for m in report["imports"]["modules"]}
    assert modules["json"]["kind"] == "stdlib" and "path" not in modules["json"]
    assert modules["pytest"]["kind"] == "missing"          # installed here, not there
    assert modules["plainpkg.helper"]["kind"] == "python"
    assert _leaks(report) == []


def test_a_venv_layout_is_judged_by_its_own_interpreter(tmp_path, python_for):
    """A venv of another Python, scanned from here: its own bin/pythonX.Y is the target, so an
    import of a package installed only in that venv resolves there (and not in ours)."""
    version = "3.13" if sys.version_info[:2] != (3, 13) else "3.12"
    subprocess.run([python_for(version), "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True,
                   capture_output=True, timeout=300)
    site_packages = tmp_path / "venv" / "lib" / f"python{version}" / "site-packages"
    (site_packages / "onlythere").mkdir(parents=True)
    (site_packages / "onlythere" / "__init__.py").write_text("")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.py").write_text("import json\nimport onlythere\n")
    # the venv named by --python; its layout alone when its folder is what is scanned
    report = scan_paths([model / "model.py"], Config(python=str(tmp_path / "venv" / "bin" / f"python{version}")),
                        cache=False).to_json()
    modules = {m["name"]: m for m in report["imports"]["modules"]}
    assert modules["onlythere"]["path"] == str(site_packages / "onlythere" / "__init__.py")
    assert f"/python{version}/" in modules["json"]["path"]
    (site_packages / "usesit.py").write_text("import onlythere\n")
    report = scan_paths([site_packages], cache=False).to_json()
    assert report["target_python"]["executable"] == str(tmp_path / "venv" / "bin" / f"python{version}")
    assert report["target_python"]["found_by"] == "layout"
    assert _leaks(report) == []
