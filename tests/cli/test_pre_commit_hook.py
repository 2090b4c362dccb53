"""`.pre-commit-hooks.yaml` run by the real pre-commit on a scratch repository.

pre-commit clones the hook repository (here a scratch copy of this checkout, committed),
installs interpkit into its own virtualenv with pip (dependencies from the package index),
and runs the hook on the staged files: a model that forks fails with the finding on one
line, the fixed model passes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Build outputs and caches of this checkout: pip builds its own copy from the sources.
_NOT_SOURCES = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.o",
                                      ".pytest_cache", ".hypothesis", ".benchmarks", ".cache", "*.whl", "*.pt")


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _pre_commit(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run([sys.executable, "-m", "pre_commit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.mark.slow
def test_scan_runs_as_a_pre_commit_hook(tmp_path):
    hooks = tmp_path / "interpkit"
    shutil.copytree(REPO_ROOT, hooks, ignore=_NOT_SOURCES, symlinks=True)
    assert (hooks / ".pre-commit-hooks.yaml").is_file()
    _git(hooks, "init", "-q")
    _git(hooks, "add", "-A")
    _git(hooks, "commit", "-q", "-m", "hook repository")
    rev = _git(hooks, "rev-parse", "HEAD")

    project = tmp_path / "project"
    project.mkdir()
    _git(project, "init", "-q")
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: interpkit-scan\n")
    (project / "model.py").write_text("import os\n\npid = os.fork()\n")
    (project / "notes.txt").write_text("not for the hook\n")
    _git(project, "add", "-A")

    failing = _pre_commit(project, tmp_path / "cache", "run", "--all-files")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "interpkit scan" in failing.stdout and "Failed" in failing.stdout
    finding = [line for line in failing.stdout.splitlines() if line.startswith("model.py:")]
    assert finding and finding[0].startswith("model.py:3:7: IK403 "), failing.stdout
    assert "notes.txt" not in failing.stdout

    (project / "model.py").write_text("import threading\n\n\ndef start():\n    return threading.Lock()\n")
    _git(project, "add", "-A")
    passing = _pre_commit(project, tmp_path / "cache", "run", "--all-files")
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "Passed" in passing.stdout
