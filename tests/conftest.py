"""Shared test helpers: compiled fixture extensions and the Pythons they are built for.

Other areas may append fixtures here; keep each one small and documented.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `fixtures.build` lives beside the package, not inside it
    sys.path.insert(0, str(REPO_ROOT))

from fixtures.build import FixtureUnavailable, build_fixture, find_python  # noqa: E402

# -- unit / integration ----------------------------------------------------------------------
# A test is an integration test when it compiles or runs something real: a compiled fixture,
# another interpreter, a runtime, a child `python -m interpkit`, pip, torch. Those folders are
# integration as a whole; elsewhere a test is integration when it asks for one of these
# fixtures or carries one of these marks. Everything else is a unit test:
# `pytest -m "not integration"` runs those in seconds.
INTEGRATION_FOLDERS = frozenset({"cli", "copies", "hardening", "memory", "realstack", "runtime", "serve", "shims",
                                 "subinterp"})
INTEGRATION_FIXTURES = frozenset({"built_fixtures", "fixture_copy", "python_for", "python312", "python313",
                                  "runtime2", "torch_dir", "realstack_python", "wheels_for",
                                  "named_pythons"})
INTEGRATION_MARKS = frozenset({"torch", "slow", "realstack"})


def pytest_collection_modifyitems(config, items):
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            folder = Path(item.fspath).resolve().relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        if (folder in INTEGRATION_FOLDERS or INTEGRATION_FIXTURES.intersection(item.fixturenames)
                or any(item.get_closest_marker(name) for name in INTEGRATION_MARKS)):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def python_for():
    """python_for("3.13") -> interpreter path, or skip the test when this machine lacks it.

    3.14 and 3.15 are Debian sid's builds, fetched and cached by content on first use
    (fixtures/pythons.py); the skip then names why they could not be fetched."""
    from fixtures.pythons import SID_VERSIONS, PythonsUnavailable, python_for as sid_python

    def find(version: str) -> str:
        candidate = find_python(version)
        if candidate is None and version in SID_VERSIONS:
            try:
                sid_python(version)
            except PythonsUnavailable as exc:
                pytest.skip(f"Python {version} cannot be fetched from Debian sid: {exc}")
        if candidate is None:
            pytest.skip(f"Python {version} is not installed here")
        return candidate

    return find


@pytest.fixture
def named_pythons(python_for, monkeypatch):
    """named_pythons("3.14", "3.15") -> {version: interpreter path}: INTERPKIT_PYTHONS names
    exactly those for this test (this process and the `interpkit` children it starts), and
    discovery's cache is cleared around it. Skips like python_for when one is missing."""
    import os

    from interpkit.native import pythons

    def name(*versions: str) -> dict[str, str]:
        found = {version: python_for(version) for version in versions}
        monkeypatch.setenv(pythons.ENV_VAR, os.pathsep.join(found.values()))
        pythons.inspect_python.cache_clear()
        return found

    yield name
    pythons.inspect_python.cache_clear()


@pytest.fixture(scope="session")
def wheels_for():
    """wheels_for("3.14", ["numpy"]) -> folder of those cp314 wheels unpacked (PYTHONPATH entry),
    downloaded with the host pip and cached by content (fixtures/pythons.py); skips with pip's
    reason when they cannot be fetched."""
    from fixtures.pythons import PythonsUnavailable, wheels_for as fetch

    def wheels(version: str, requirements: list[str]) -> Path:
        try:
            return fetch(version, requirements)
        except PythonsUnavailable as exc:
            pytest.skip(str(exc))

    return wheels


@pytest.fixture(scope="session")
def built_fixtures():
    """built_fixtures(name, python=sys.executable) -> Path of the compiled fixture extension.

    Builds are cached under ~/.cache/interpkit-fixtures/<tag>/ by source hash, so only the
    first session pays for compiling. A fixture that needs pybind11/torch where they are
    missing skips the test with the reason.
    """

    def build(name: str, python: str = sys.executable) -> Path:
        try:
            return build_fixture(name, python)
        except FixtureUnavailable as exc:
            pytest.skip(str(exc))

    return build


@pytest.fixture(scope="session")
def torch_dir() -> Path:
    """site-packages/torch of the default Python; skips when torch is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        pytest.skip("torch is not installed")
    return Path(spec.origin).parent


@pytest.fixture(scope="session")
def realstack_python() -> str:
    """Python of the real-stack venv (default CUDA torch build, torchvision, transformers).

    Built on first use by fixtures/realstack (cached under ~/.cache/interpkit-venvs/ by the hash
    of its pinned requirements and the Python version; minutes from a warm pip cache). The venv
    imports interpkit from this checkout: the record is refreshed here, once per session, and
    INTERPKIT_CHECKOUT is set for the children this session starts. Skips with the reason where
    the venv cannot be built (no wheels on disk and no registry; INTERPKIT_NO_REALSTACK set).
    """
    import os

    from fixtures.realstack import CHECKOUT_ENV, RealstackUnavailable, build

    try:
        python = build(checkout=REPO_ROOT)
    except RealstackUnavailable as exc:
        pytest.skip(f"real-stack venv unavailable: {exc}")
    os.environ[CHECKOUT_ENV] = str(REPO_ROOT)
    return str(python)
