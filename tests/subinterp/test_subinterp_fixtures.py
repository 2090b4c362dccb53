"""Every fixture extension, compiled for 3.12 and 3.13, probed in isolated and legacy
subinterpreters of that Python.

Each row says what really happens (status and the attributes seen shared between two
interpreters alive at once) and is checked against the analyzer's subinterpreters verdict
where the hazard can show up in a probe.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.core.findings import Backend, Verdict
from fixtures.build import FixtureUnavailable, build_fixture
from interpkit.native.subinterpreters.runtime import ModuleTarget, probe_modules

# name: (isolated status, isolated shared, legacy status, legacy shared)
EXPECTED = {
    # Multi-phase, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED, state in the module: works everywhere.
    "clean": ("ok", set(), "ok", set()),
    "multi_phase_isolated": ("ok", set(), "ok", set()),
    "bigstate": ("ok", set(), "ok", set()),
    # Namespace-backend hazards (symbol clashes, GNU_UNIQUE, static TLS): harmless here.
    "clash_a": ("ok", set(), "ok", set()),
    "clash_b": ("ok", set(), "ok", set()),
    "gnu_unique_cpp": ("ok", set(), "ok", set()),
    "initial_exec_tls": ("ok", set(), "ok", set()),
    # Single-phase with static state: refused by isolated interpreters; legacy ones import
    # it, and the copied module dict hands the same objects to both interpreters.
    "single_phase_static": ("import_error", set(), "ok", {"bump", "error", "fail"}),
    # Multi-phase without the slot: refused by isolated, fine (and unshared) in legacy.
    "multi_phase_no_slot": ("import_error", set(), "ok", set()),
    # Declares own-GIL support but its type is a static PyTypeObject: one object in both.
    "static_type": ("ok", {"Point"}, "ok", {"Point"}),
    # PyInit_mixed_init is multi-phase and isolated; the second init in the same binary,
    # PyInit_mixed_init_legacy, is single-phase (probed below under that name).
    "mixed_init": ("ok", set(), "ok", set()),
    # PyGILState_Ensure breaks only on threads created in C, which a probe from Python
    # cannot make: the import and a call on a Python thread work.
    "gilstate": ("ok", set(), "ok", set()),
}
# Where 3.12.1 differs: destroying the second legacy interpreter that imported a single-phase
# module with static state segfaults (CPython's own _testsinglephase does the same).
DIFFERENT_ON_312 = {("single_phase_static", "legacy"): ("crash", set())}
# Fixtures whose hazard a probe cannot reach; the analyzer's verdict is checked elsewhere.
UNREACHABLE_BY_PROBE = {"gilstate", "mixed_init"}
# Not probed here: maskrcnn_ops (built against torch, which exists for 3.11 only) and
# pybind11_module (pybind11 is not installed for 3.13).


@pytest.fixture(scope="module", params=["3.13", "3.12"])
def version(request):
    request.getfixturevalue("python313" if request.param == "3.13" else "python312")
    return request.param


@pytest.fixture(scope="module")
def built(version):
    from interpkit.native.pythons import find_python

    paths, missing = {}, {}
    for name in EXPECTED:
        try:
            paths[name] = build_fixture(name, python=str(find_python(version).executable))
        except FixtureUnavailable as exc:
            missing[name] = str(exc)
    return paths, missing


@pytest.fixture(scope="module")
def observed(built, version):
    paths, _ = built
    targets = [ModuleTarget(name, path) for name, path in paths.items()]
    targets.append(ModuleTarget("mixed_init_legacy", paths["mixed_init"]))
    return {config: probe_modules(targets, python=version, config=config, n=2, batch_size=1)
            for config in ("isolated", "legacy")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("config", ["isolated", "legacy"])
def test_fixture_outcome(name, config, version, built, observed):
    if name in built[1]:
        pytest.skip(built[1][name])
    outcome = observed[config][name]
    isolated_status, isolated_shared, legacy_status, legacy_shared = EXPECTED[name]
    status, shared = ((isolated_status, isolated_shared) if config == "isolated"
                      else (legacy_status, legacy_shared))
    if version == "3.12":
        status, shared = DIFFERENT_ON_312.get((name, config), (status, shared))
    assert outcome.status == status, outcome.message
    assert set(outcome.shared_state) == shared
    if status == "import_error":
        assert "does not support loading in subinterpreters" in outcome.message
    elif status == "crash":
        assert outcome.signal and outcome.steps[-1]["step"] == "destroy"
    else:
        steps = [s["step"] for s in outcome.steps]
        assert steps.count("import") == 2 and "use_after_destroy" in steps


def test_second_init_in_mixed_binary_is_single_phase(observed):
    assert observed["isolated"]["mixed_init_legacy"].status == "import_error"
    assert observed["legacy"]["mixed_init_legacy"].status == "ok"


def test_prediction_matches_observation_where_reachable(built, observed):
    from interpkit.analyzer.elf.analyze import analyze_elf_files

    paths, _ = built
    results = {Path(fr.path).name: fr
               for fr in analyze_elf_files(list(paths.values()), Config(follow_imports=False))}
    compared = 0
    for name, path in paths.items():
        if name in UNREACHABLE_BY_PROBE:
            continue
        outcome = observed["isolated"][name]
        real = Verdict.OK if outcome.ok and not outcome.shared_state else Verdict.FAIL
        predicted = results[path.name].verdicts[Backend.SUBINTERPRETERS]
        assert predicted is real, f"{name}: predicted {predicted}, observed {outcome.status} {outcome.shared_state}"
        compared += 1
    assert compared >= 8



def test_verify_site_packages_on_fixture_environment(built, version, tmp_path):
    """A small site-packages made of fixture builds: names come from the path, every init in
    a binary is probed, and shared objects count as a failure."""
    import shutil

    from interpkit.analyzer.verification.corpus import verify_site_packages

    paths, _ = built
    package = tmp_path / "site" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    names = ("clean", "mixed_init", "static_type", "single_phase_static", "multi_phase_no_slot")
    for name in names:
        shutil.copy2(paths[name], package / paths[name].name)
    (package / "libhelper-1.0.so").write_bytes(paths["clean"].read_bytes())  # not importable

    result = verify_site_packages(tmp_path / "site", version, n=2)
    rows = {row["module"]: row for row in result["rows"] if row["status"] != "skipped"}
    assert set(rows) == {f"pkg.{name}" for name in names}
    skipped = [row for row in result["rows"] if row["status"] == "skipped"]
    assert [Path(row["path"]).name for row in skipped] == ["libhelper-1.0.so"]
    assert rows["pkg.clean"]["status"] == "ok" and rows["pkg.clean"]["observed"] == "ok"
    assert rows["pkg.mixed_init"]["status"] == "import_error"
    assert "pkg.mixed_init_legacy" in rows["pkg.mixed_init"]["outcome"]["other_inits"]
    assert rows["pkg.static_type"]["status"] == "ok"
    assert rows["pkg.static_type"]["observed"] == "fail"          # Point is one shared object
    assert result["status_matrix"]["fail"]["shared_state"] == 1
    assert result["summary"]["agreed"] == result["summary"]["decided"] == len(names)
    assert result["probed"] == len(names)
    assert result["agreement"] == 1.0
