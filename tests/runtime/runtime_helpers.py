"""Helpers for the runtime tests: child processes in their own process group.

Anything that may crash or hang runs in a child process of its own process group, killed on
timeout, so a crash never takes pytest down.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ChildResult:
    returncode: int | None      # None when it timed out
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def signal(self) -> str | None:
        if self.returncode is not None and self.returncode < 0:
            return signal.Signals(-self.returncode).name
        return None


def run_isolated(argv: list[str], *, env: dict[str, str] | None = None,
                 timeout: float = 60) -> ChildResult:
    """Run argv in its own process group; kill the group on timeout (no orphans)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", env=full_env,
                            start_new_session=True, cwd=REPO_ROOT)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        return ChildResult(proc.returncode, stdout, stderr)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return ChildResult(None, stdout, stderr)


def run_python(code: str, *, env: dict[str, str] | None = None,
               timeout: float = 60, python: str = sys.executable) -> ChildResult:
    return run_isolated([python, "-c", code], env=env, timeout=timeout)


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


requires_torch = pytest.mark.skipif(not torch_available(), reason="torch is not installed")
