"""3.14 and 3.15 through PEP 734's public API (concurrent.interpreters): the probe's steps, the
serving runtime, both configurations, and `memory` (interpreter k+1 against process k+1 of the
same Python). Real interpreters from fixtures/pythons.py."""
from __future__ import annotations


import pytest

from interpkit.analyzer.memory.estimate import estimate_files
from interpkit.analyzer.memory.measure import Workload, measure
from interpkit.analyzer.memory.report import MemoryReport
from interpkit.native import pythons
from interpkit.native.subinterpreters.runtime import SubinterpreterRuntime, probe_module

VERSIONS = ("3.14", "3.15")


@pytest.fixture
def sid_pythons(named_pythons):
    return named_pythons(*VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("config", ["isolated", "legacy"])
def test_probe_runs_every_step_through_the_public_api(sid_pythons, built_fixtures, version, config):
    info = pythons.find_python(version)
    assert info.subinterpreter_api == "concurrent.interpreters"
    built = built_fixtures("single_phase_static", sid_pythons[version])
    outcome = probe_module("single_phase_static", file=built, python=info, config=config, interpreters=3)
    if config == "isolated":  # single-phase init is refused by isolated interpreters
        assert outcome.status == "import_error"
        assert "does not support loading in subinterpreters" in outcome.message
    else:  # legacy ones (main-interpreter rules) load it in all three, and tear down
        assert outcome.status == "ok", outcome.message
        steps = [step["step"] for step in outcome.steps]
        assert steps.count("import") == 3 and steps.count("destroy") == 3 and "use_after_destroy" in steps
        assert outcome.teardown["status"] in ("ok", "shared_state")


@pytest.mark.parametrize("version", VERSIONS)
def test_runtime_serves_calls_in_own_gil_interpreters(sid_pythons, version):
    with SubinterpreterRuntime(3, python=version) as runtime:
        runtime.run(0, "import sys; marker = 'zero'")
        # Each interpreter has its own sys: the version seen inside, and isolation of __main__.
        assert runtime.call_all("platform:python_version") == [pythons.find_python(version).full_version] * 3
        runtime.run(1, "import __main__; assert not hasattr(__main__, 'marker')")
    assert runtime.ending.clean


def test_memory_compares_interpreter_k_plus_1_with_a_process_of_the_same_python(sid_pythons):
    workload = Workload(modules=("json", "decimal"), sys_path=(), call=None)
    samples = measure(workload, [1, 2], ["subinterpreters", "processes"], subinterpreter_python="3.14",
                      timeout_s=300)
    assert [(s.backend, s.interpreters, s.error) for s in samples] == [
        ("subinterpreters", 1, None), ("subinterpreters", 2, None), ("processes", 1, None), ("processes", 2, None)]
    assert {s.python_version for s in samples} == {pythons.find_python("3.14").full_version}
    report = MemoryReport.build(workload, estimate_files([]), samples)
    rows = {(row.backend, row.interpreters): row for row in report.rows}
    for backend in ("subinterpreters", "processes"):
        second = rows[(backend, 2)]
        assert second.python.startswith("3.14.")
        assert second.marginal_private_dirty > 0 and second.total_pss > rows[(backend, 1)].total_pss

