"""Every fixture extension, compiled for 3.13, probed in isolated and legacy subinterpreters.

Each row says what really happens (status and the attributes seen shared between two
interpreters alive at once) and is checked against the analyzer's subinterpreters verdict
where the hazard can show up in a probe.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.config import Config
from analyzer.findings import Backend, Verdict
from fixtures.build import FixtureUnavailable, build_fixture
from native.subinterp import ModuleTarget, probe_modules

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
# Fixtures whose hazard a probe cannot reach; the analyzer's verdict is checked elsewhere.
UNREACHABLE_BY_PROBE = {"gilstate", "mixed_init"}
# Not probed here: maskrcnn_ops (built against torch, which exists for 3.11 only) and
# pybind11_module (pybind11 is not installed for 3.13).


@pytest.fixture(scope="module")
def built(python313):
    paths, missing = {}, {}
    for name in EXPECTED:
        try:
            paths[name] = build_fixture(name, python=str(python313.executable))
        except FixtureUnavailable as exc:
            missing[name] = str(exc)
    return paths, missing


@pytest.fixture(scope="module")
def observed(built, python313):
    paths, _ = built
    targets = [ModuleTarget(name, path) for name, path in paths.items()]
    targets.append(ModuleTarget("mixed_init_legacy", paths["mixed_init"]))
    return {config: probe_modules(targets, python=python313, config=config, n=2, batch_size=1)
            for config in ("isolated", "legacy")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("config", ["isolated", "legacy"])
def test_fixture_outcome(name, config, built, observed):
    if name in built[1]:
        pytest.skip(built[1][name])
    outcome = observed[config][name]
    isolated_status, isolated_shared, legacy_status, legacy_shared = EXPECTED[name]
    status, shared = ((isolated_status, isolated_shared) if config == "isolated"
                      else (legacy_status, legacy_shared))
    assert outcome.status == status, outcome.message
    assert set(outcome.shared_state) == shared
    if status == "import_error":
        assert "does not support loading in subinterpreters" in outcome.message
    else:
        steps = [s["step"] for s in outcome.steps]
        assert steps.count("import") == 2 and "use_after_destroy" in steps


def test_second_init_in_mixed_binary_is_single_phase(observed):
    assert observed["isolated"]["mixed_init_legacy"].status == "import_error"
    assert observed["legacy"]["mixed_init_legacy"].status == "ok"


def test_prediction_matches_observation_where_reachable(built, observed):
    from analyzer.elf.analyze import analyze_elf_files

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

