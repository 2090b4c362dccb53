"""Fixtures for the copies runtime tests: compiled fixtures, a shared runtime, isolated children.

The copies runtime uses no glibc namespace, so one pytest process may start many of them;
anything expected to crash (an extension loaded as built, torch) runs in a child process of
its own process group.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.runtime.runtime_helpers import ChildResult, run_isolated

REPO_ROOT = Path(__file__).resolve().parents[2]
# The fixtures whose C statics the tests count: each has bump() -> calls so far.
COUNTING = ("single_phase_static", "gnu_unique_cpp", "clash_a", "clash_b")


def run_child(code: str, *, timeout: float = 300, env: dict[str, str] | None = None) -> ChildResult:
    """Run ``python -c code`` in its own process group; the group is killed at the timeout."""
    return run_isolated([sys.executable, "-c", code], env=env, timeout=timeout)


@pytest.fixture(scope="session")
def fixture_dirs(built_fixtures) -> dict[str, Path]:
    """Fixture name -> folder of its compiled extension (for sys.path)."""
    return {name: built_fixtures(name).parent for name in (*COUNTING, "libpython_linked", "bigstate",
                                                           "initial_exec_tls", "static_type")}


@pytest.fixture(scope="module")
def copies4(fixture_dirs):
    from interpkit.native.copies.runtime import CopiesRuntime

    with CopiesRuntime(4, timeout=120, sys_path=[*map(str, fixture_dirs.values()), *sys.path]) as runtime:
        yield runtime
