"""Declarations the binding generators write in ways a static table read misses, each checked
against the importing CPython's own answer (an isolated subinterpreter import in a child):
pybind11 3.x's slot array filled inside PyInit_, and 3.15's PyModExport_ (PEP 793) with its
PEP 820 slot ids next to a legacy PyInit_."""
from __future__ import annotations

import subprocess

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.core.findings import Backend, Verdict
from tests.elf.test_fixtures import _IMPORT_IN_ISOLATED


def _analyzed(path):
    [result] = [r for r in analyze_elf_files([path], Config(), closure=False) if r.path == path]
    return result


def _cpython_says(python: str, path, module: str) -> str:
    proc = subprocess.run([python, "-c", _IMPORT_IN_ISOLATED, str(path), module],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    return "ok" if proc.stdout.strip() == "ok" else "fail"


@pytest.mark.parametrize("version", ["3.13", "3.14", "3.15"])
@pytest.mark.parametrize("fixture, declared", [("pybind11_isolated", "per-interpreter-gil-supported"),
                                               ("pybind11_module", "not-supported")])
def test_pybind11_3_slots_are_read_from_the_init_stores(built_fixtures, python_for, version, fixture, declared):
    python = python_for(version)
    path = built_fixtures(fixture, python)
    result = _analyzed(path)
    [init] = result.facts["init"]
    assert init["multiple_interpreters"] == declared
    assert init["slots_read_from"] == f"{init['symbol']} stores the slot table at run time"
    assert "IK103" not in {f.code for f in result.findings}
    expected = "ok" if declared == "per-interpreter-gil-supported" else "fail"
    # pybind11's default (no option given) is NOT_SUPPORTED: CPython refuses it.
    assert result.verdicts[Backend.SUBINTERPRETERS].value == expected
    assert _cpython_says(python, path, init["module"]) == expected


@pytest.mark.parametrize("fixture", ["modexport_isolated", "modexport_stub_init"])
def test_modexport_declaration_wins_on_315(built_fixtures, python_for, fixture):
    python = python_for("3.15")
    path = built_fixtures(fixture, python)
    result = _analyzed(path)
    [init] = result.facts["init"]
    assert init["export"] == "PyModExport_modexport_isolated"
    assert init["kind"] == "multi-phase"   # also where PyInit_ is a stub returning NULL
    # The PySlot array (PEP 820 ids 109, 100, 103, 86, 87) is what 3.15 reads, not PyInit_'s table.
    assert [name for name, _ in init["slots"]] == ["Py_mod_abi", "Py_mod_name", "Py_mod_methods",
                                                   "Py_mod_multiple_interpreters", "Py_mod_gil"]
    assert init["multiple_interpreters"] == "per-interpreter-gil-supported"
    codes = {f.code for f in result.findings}
    assert not codes & {"IK101", "IK102", "IK103", "IK303"}
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.OK
    assert _cpython_says(python, path, "modexport_isolated") == "ok"


def test_without_modexport_the_legacy_table_decides(built_fixtures, python_for):
    """Built for 3.14 the export is compiled out (no PEP 820 headers): PyInit_ declares nothing."""
    python = python_for("3.14")
    path = built_fixtures("modexport_isolated", python)
    result = _analyzed(path)
    [init] = result.facts["init"]
    assert "export" not in init and init["multiple_interpreters"] == "absent"
    assert "IK102" in {f.code for f in result.findings}
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.FAIL
    assert _cpython_says(python, path, "modexport_isolated") == "fail"


def test_all_zero_table_nothing_writes_is_empty(built_fixtures, python_for):
    """`{{0, NULL}}` lands in .bss; no instruction or other data reaches it, so it is read as an
    empty table (no Py_mod_multiple_interpreters slot: refused), not as one filled at run time."""
    python = python_for("3.13")
    path = built_fixtures("empty_slot_table", python)
    result = _analyzed(path)
    [init] = result.facts["init"]
    assert init["slots"] == [] and init["multiple_interpreters"] == "absent"
    assert init["slots_read_from"] == "an all-zero table that no code or data refers to"
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.FAIL
    assert _cpython_says(python, path, "empty_slot_table") == "fail"


def test_zero_table_a_helper_fills_stays_unread(built_fixtures, python_for):
    """The same .bss table, filled by a helper PyInit_ calls: code reaches it, so it is not empty."""
    result = _analyzed(built_fixtures("runtime_slots", python_for("3.13")))
    assert result.facts["init"][0]["slots_readable"] is False
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.UNKNOWN
