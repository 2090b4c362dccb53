"""Fixtures for the namespaces runtime tests: the bare host, a shared runtime.

glibc never gives a namespace back (interpkit.native.limits), so this pytest process keeps its own
use of namespaces small: one shared two-interpreter runtime plus a few short-lived ones;
everything else runs in child processes (runtime_helpers.run_python).
"""
from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def libpython() -> Path:
    from interpkit.native.limits import find_libpython

    return find_libpython()


@pytest.fixture(scope="session")
def rawns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bare dlmopen host of rawns.c, compiled with gcc for this test session."""
    out = tmp_path_factory.mktemp("rawns") / "rawns"
    subprocess.run(["gcc", "-O1", "-o", str(out), str(Path(__file__).with_name("rawns.c")),
                    "-ldl", "-lpthread"], check=True)
    return out


@pytest.fixture(scope="session")
def rawns_env() -> dict[str, str]:
    # The bare host does no path configuration; PYTHONHOME points its interpreters home.
    return {"PYTHONHOME": sysconfig.get_config_var("prefix")}


@pytest.fixture(scope="session")
def runtime2():
    from interpkit.native import Runtime

    with Runtime(2, timeout=120) as runtime:
        yield runtime
