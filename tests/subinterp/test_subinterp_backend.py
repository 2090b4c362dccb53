"""The subinterpreters backend on real CPython 3.12/3.13 interpreters (child processes)."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from interpkit.core.errors import RuntimeUnavailable
from interpkit.native.sandbox.outcome import ProbeOutcome
from interpkit.native.pythons import ENV_VAR, find_python, inspect_python
from interpkit.native.subinterpreters.runtime import (ModuleTarget, SubinterpreterError, SubinterpreterRuntime,
                              parallel_speedup, probe_module, probe_modules)
from tests.subinterp.conftest import DATETIME_TEARDOWN_CRASH

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "subinterp"


# --------------------------------------------------------------------------- discovery

def test_find_python_runs_the_candidate(python313):
    assert python313.version[:2] == (3, 13)
    assert python313.subinterpreter_api == "_interpreters"
    assert python313.soabi.startswith("cpython-313")
    assert python313.unsupported_reason() is None


def test_env_var_candidate_wins_and_bad_ones_are_named(monkeypatch, python313):
    inspect_python.cache_clear()
    monkeypatch.setenv(ENV_VAR, f"/nonexistent/python3.13{':'}{python313.executable}")
    assert find_python("3.13").executable == python313.executable
    with pytest.raises(RuntimeUnavailable) as caught:
        find_python("3.99")
    assert "/nonexistent/python3.13: does not exist" in str(caught.value)
    assert ENV_VAR in str(caught.value)
    inspect_python.cache_clear()


def test_the_tools_own_python_is_refused_with_a_reason():
    # 3.11 has no own-GIL subinterpreters: asking for it by path names why.
    tool_python = sysconfig.get_config_var("BINDIR") + "/python3.11"
    if not Path(tool_python).exists():
        pytest.skip("no python3.11 next to the running interpreter")
    with pytest.raises(RuntimeUnavailable, match="need 3.12"):
        find_python(tool_python)


# --------------------------------------------------------------------------- CPython's own test extensions
# _testsinglephase / _testmultiphase ship with CPython: a single-phase module with static
# state, and a multi-phase one with per-interpreter state.

@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_single_phase_is_refused_in_isolated(version, request):
    request.getfixturevalue("python312" if version == "3.12" else "python313")
    outcome = probe_module("_testsinglephase", python=version, config="isolated")
    assert outcome.status == "import_error"
    assert "does not support loading in subinterpreters" in outcome.message
    assert [s["step"] for s in outcome.steps] == ["create", "create", "import"]


@pytest.mark.parametrize("version", ["3.12", "3.13"])
@pytest.mark.parametrize("config", ["isolated", "legacy"])
def test_multi_phase_isolated_module_works_everywhere(version, config, request):
    request.getfixturevalue("python312" if version == "3.12" else "python313")
    outcome = probe_module("_testmultiphase", python=version, config=config, interpreters=3)
    assert outcome.status == "ok", outcome.message
    assert outcome.shared_state == ()
    steps = [s["step"] for s in outcome.steps]
    assert steps.count("import") == 3 and "use_after_destroy" in steps
    assert all(s.get("ok", True) for s in outcome.steps)


def test_single_phase_shares_state_in_legacy_313(python313):
    # Legacy interpreters copy the first import's module dict: the same objects in both.
    outcome = probe_module("_testsinglephase", python="3.13", config="legacy")
    assert outcome.status == "ok"
    assert {"sum", "look_up_self", "error"} <= set(outcome.shared_state)


def test_single_phase_in_legacy_312_crashes_on_teardown(python312):
    # CPython 3.12.1: destroying the second legacy interpreter that imported a single-phase
    # module segfaults; the probe pins it on that step instead of dying with it.
    outcome = probe_module("_testsinglephase", python="3.12", config="legacy")
    assert outcome.status == "crash"
    assert outcome.signal == "SIGSEGV"
    assert outcome.steps[-1]["step"] == "destroy"
    assert "during destroy in interpreter 1" in outcome.message


# --------------------------------------------------------------------------- crash, hang, batches

def test_crash_hang_and_batch_isolation(python313):
    targets = [ModuleTarget("_testmultiphase"), ModuleTarget("ik_crash_on_import"),
               ModuleTarget("ik_hang_on_import"), ModuleTarget("_testsinglephase")]
    outcomes = probe_modules(targets, python=python313, sys_path=(str(SAMPLES),), timeout_s=5,
                             batch_size=4)
    assert outcomes["ik_crash_on_import"].status == "crash"
    assert outcomes["ik_crash_on_import"].signal == "SIGSEGV"
    assert "during import in interpreter 0" in outcomes["ik_crash_on_import"].message
    assert outcomes["ik_hang_on_import"].status == "hang"
    assert "hung for 5 s during import" in outcomes["ik_hang_on_import"].message
    # The batch child died; its neighbours were re-run alone and kept their own outcomes.
    assert outcomes["_testmultiphase"].status == "ok"
    assert outcomes["_testsinglephase"].status == "import_error"


def test_memory_limit_is_applied(python313, tmp_path):
    (tmp_path / "ik_allocates.py").write_text("blob = bytearray(3 * 1024 ** 3)\n")
    # The limit is on resident memory (bytearray zero-fills, so every page is touched): the
    # child is killed once it holds more than the limit, and the outcome says so.
    outcome = probe_module("ik_allocates", tmp_path, python=python313, memory_limit_mb=1024)
    assert outcome.status == "crash" and outcome.signal == "SIGKILL", outcome
    assert "ran out of memory (memory limit 1024 MiB" in outcome.message
    assert "during import in interpreter 0" in outcome.message


def test_outcome_json_shape(python313):
    data = probe_module("_testmultiphase", python=python313).to_json()
    assert set(data) == {"status", "message", "signal", "steps", "shared_state"}
    assert ProbeOutcome.from_json(data).to_json() == data


# --------------------------------------------------------------------------- parallel work and runtime API

def test_parallel_speedup_reports_all_timings(python313):
    result = parallel_speedup(python313, n=2, loops=200_000, repeat=1)
    for key in ("one_interpreter_s", "n_interpreters_s", "n_threads_one_interpreter_s"):
        assert result[key] > 0
    assert result["speedup"] == pytest.approx(2 * result["one_interpreter_s"] / result["n_interpreters_s"])


def test_runtime_keeps_state_per_interpreter(python313):
    with SubinterpreterRuntime(2, python=python313, sys_path=(str(SAMPLES),)) as runtime:
        assert runtime.call(0, "ik_pure_work:record", "a") == ["a"]
        assert runtime.call(0, "ik_pure_work:record", "b") == ["a", "b"]
        assert runtime.call(1, "ik_pure_work:record", "c") == ["c"]
        assert runtime.call_all("ik_pure_work:record", "d") == [["a", "b", "d"], ["c", "d"]]
        runtime.run(1, "def answer():\n    return 6 * 7\n")
        assert runtime.call(1, "__main__:answer") == 42
        with pytest.raises(SubinterpreterError, match="ValueError: boom"):
            runtime.call(0, "ik_pure_work:fail", "boom")
        with pytest.raises(SubinterpreterError, match="NameError"):
            runtime.run(0, "undefined_name")
        assert runtime.call(0, "os:getpid") == runtime.call(1, "os:getpid")
    assert runtime._child.proc.poll() is not None


def test_crash_is_pinned_on_a_dependency_that_crashes_alone(python313):
    from interpkit.native.subinterpreters.runtime import blame_dependencies

    if python313.version != DATETIME_TEARDOWN_CRASH:
        pytest.skip(f"the _datetime teardown crash is CPython {'.'.join(map(str, DATETIME_TEARDOWN_CRASH))}'s "
                    f"(this is {'.'.join(map(str, python313.version))})")
    outcome = probe_module("ik_uses_datetime", SAMPLES, python=python313)
    assert outcome.status == "crash", outcome
    assert "_datetime" in [n for s in outcome.steps for n in s.get("native_imports", ())]
    blamed = blame_dependencies({"ik_uses_datetime": outcome}, python=python313,
                                sys_path=(str(SAMPLES),))
    dependency, alone = blamed["ik_uses_datetime"]
    assert dependency == "_datetime"
    assert alone.status == "crash"
    # A module that crashes by itself has nobody else to blame.
    crashed = probe_module("ik_crash_on_import", SAMPLES, python=python313)
    assert blame_dependencies({"ik_crash_on_import": crashed}, python=python313) == {}


def test_configured_interpreters_are_candidates(monkeypatch, python313, tmp_path):
    # [tool.interpkit] interpreters = [...] reaches discovery through Config.interpreters.
    from interpkit.analyzer.config import load_config
    from interpkit.native.subinterpreters.runtime import resolve_python

    monkeypatch.delenv(ENV_VAR, raising=False)
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.interpkit]\ninterpreters = ["/opt/missing/python3.13", "{python313.executable}"]\n')
    config = load_config(tmp_path / "pyproject.toml")
    assert config.interpreters[0] == "/opt/missing/python3.13"
    assert resolve_python("3.13", config.interpreters).executable == python313.executable
    with pytest.raises(RuntimeUnavailable, match="/opt/missing/python3.13: does not exist"):
        resolve_python("3.99", config.interpreters)
