"""The test set-up's CPython 3.14 and 3.15 (Debian sid's packages, fixtures/pythons.py) are real,
usable interpreters: children start from their sys.executable, fixtures compile and link
against them, and cp314/cp315 wheels import in them."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fixtures import pythons

VERSIONS = ("3.14", "3.15")


def _run(python: str, code: str, **env: str) -> str:
    done = subprocess.run([python, "-I" if not env else "-s", "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env} if env else None)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("version", VERSIONS)
def test_wrapper_is_its_own_executable_and_starts_children(python_for, version):
    python = python_for(version)
    code = ("import sys, subprocess; print(sys.executable); print('%d.%d' % sys.version_info[:2]); "
            "print(subprocess.run([sys.executable, '-c', 'import sys; print(sys.prefix)'],"
            " capture_output=True, text=True, check=True).stdout.strip())")
    executable, reported, child_prefix = _run(python, code).splitlines()
    assert Path(executable) == Path(python)
    assert reported == version
    assert Path(child_prefix) == pythons.python_root(python) / "usr"


@pytest.mark.parametrize("version", VERSIONS)
def test_public_interpreters_api_runs_code(python_for, version):
    code = ("from concurrent import interpreters; i = interpreters.create(); "
            "i.exec('import sys; x = sys.version_info[:2]'); print(i.call(sum, (2, 3))); i.close()")
    assert _run(python_for(version), code) == "5"


@pytest.mark.parametrize("version", VERSIONS)
def test_cached_by_content_and_asked_twice_is_the_same_tree(python_for, version):
    python = Path(python_for(version))
    root = pythons.python_root(python)
    assert pythons.python_for(version) == python
    assert root.parent == pythons.CACHE_ROOT and len(root.name) == 16
    # The folder's name is the content hash: the marker was written by the smoke run.
    assert version in (root / "interpkit-python-complete").read_text()


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_links_against_the_relocated_libpython(python_for, built_fixtures, version):
    python = python_for(version)
    built = built_fixtures("libpython_linked", python)
    assert built.name.endswith(f"cpython-{version.replace('.', '')}-x86_64-linux-gnu.so")
    code = "import libpython_linked, sys; print(libpython_linked.__file__)"
    assert _run(python, code, PYTHONPATH=str(built.parent)) == str(built)


@pytest.mark.parametrize("version", VERSIONS)
def test_wheels_for_that_python_import_there(python_for, wheels_for, version):
    python = python_for(version)
    folder = wheels_for(version, ["markupsafe"])
    tag = version.replace(".", "")
    [speedups] = (folder / "markupsafe").glob("_speedups*.so")
    assert speedups.name == f"_speedups.cpython-{tag}-x86_64-linux-gnu.so"
    code = "import markupsafe._speedups as s; print(s.__file__)"
    assert _run(python, code, PYTHONPATH=str(folder)) == str(speedups)
    assert wheels_for(version, ["markupsafe"]) == folder  # the second ask is the cached folder


def test_unfetchable_packages_give_the_reason(tmp_path, monkeypatch):
    # An empty cache and no apt-get to run: the reason the tests skip with says so.
    monkeypatch.setattr(pythons, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pythons.PythonsUnavailable, match="apt-get is not installed"):
        pythons.python_for("3.14")
    with pytest.raises(pythons.PythonsUnavailable, match="only 3.14, 3.15"):
        pythons.python_for("3.9")
    assert not any((tmp_path / "cache").glob("*/usr"))  # nothing half-built is left
