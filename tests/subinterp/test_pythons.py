"""Other Pythons are found from INTERPKIT_PYTHONS, configuration, `pyenv root` and PATH, in that
order, and each candidate is run: these tests build a pyenv root and a PATH of their own around
a real 3.13 and watch which interpreter the search picks."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from interpkit.native import pythons


def _fake_pyenv(bin_dir: Path, root: Path) -> None:
    """A `pyenv` command whose `pyenv root` prints root (the search runs the command)."""
    script = bin_dir / "pyenv"
    script.write_text(f'#!/bin/sh\n[ "$1" = root ] && echo "{root}" && exit 0\nexit 1\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _install(root: Path, name: str, target: Path, exe: str) -> Path:
    folder = root / "versions" / name / "bin"
    folder.mkdir(parents=True)
    (folder / exe).symlink_to(target)
    return folder / exe


@pytest.fixture
def clean_search(monkeypatch):
    monkeypatch.delenv(pythons.ENV_VAR, raising=False)
    pythons.pyenv_root.cache_clear()
    pythons.inspect_python.cache_clear()
    yield
    pythons.pyenv_root.cache_clear()
    pythons.inspect_python.cache_clear()


def test_pyenv_root_is_asked_and_only_cpython_builds_count(tmp_path, monkeypatch, clean_search, python313):
    bin_dir, root = tmp_path / "bin", tmp_path / "pyenv-root"
    bin_dir.mkdir()
    _fake_pyenv(bin_dir, root)
    ours = _install(root, "3.13.0", python313.executable, "python3.13")
    _install(root, "3.13.0t", python313.executable, "python3.13")       # free-threaded name: skipped
    _install(root, "3.11.7", python313.executable, "python3.11")        # below 3.12: skipped
    _install(root, "venv-3.13", python313.executable, "python3.13")     # a virtualenv name: skipped
    monkeypatch.setenv("PATH", str(bin_dir))

    assert pythons.pyenv_root() == root
    assert pythons.pyenv_pythons() == [str(ours)]
    assert pythons.candidate_list()[0] == str(ours)
    found = pythons.find_python("3.13")
    assert found.executable == ours and found.version[:2] == (3, 13)


def test_env_var_then_configuration_then_pyenv_then_path(tmp_path, monkeypatch, clean_search, python313):
    bin_dir, root = tmp_path / "bin", tmp_path / "pyenv-root"
    bin_dir.mkdir()
    _fake_pyenv(bin_dir, root)
    from_pyenv = _install(root, "3.13.0", python313.executable, "python3.13")
    from_env = tmp_path / "env" / "python3.13"
    from_env.parent.mkdir()
    from_env.symlink_to(python313.executable)
    configured = tmp_path / "configured" / "python3.13"
    configured.parent.mkdir()
    configured.symlink_to(python313.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv(pythons.ENV_VAR, f"/nonexistent/python3.13{os.pathsep}{from_env}")

    order = pythons.candidate_list([str(configured)])
    assert order[:4] == ["/nonexistent/python3.13", str(from_env), str(configured), str(from_pyenv)]
    assert order[4:] == ["python3.15", "python3.14", "python3.13", "python3.12"]
    assert pythons.find_python("3.13", [str(configured)]).executable == from_env

    monkeypatch.delenv(pythons.ENV_VAR)
    assert pythons.find_python("3.13", [str(configured)]).executable == configured
    assert pythons.find_python("3.13").executable == from_pyenv


def test_without_pyenv_only_path_names_remain(tmp_path, monkeypatch, clean_search):
    monkeypatch.setenv("PATH", str(tmp_path))   # nothing on it: no pyenv, no python3.x
    assert pythons.pyenv_root() is None and pythons.pyenv_pythons() == []
    assert pythons.candidate_list() == ["python3.15", "python3.14", "python3.13", "python3.12"]
    assert pythons.python_for_version("3.13") is None
