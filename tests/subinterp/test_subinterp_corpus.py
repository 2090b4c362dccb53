"""Prediction vs reality on real PyPI wheels for 3.13 (the pinned corpus in conftest.py)."""
from __future__ import annotations

import pytest

from interpkit.analyzer.verification.corpus import site_module_name, verify_site_packages
from interpkit.native.subinterpreters.runtime import ModuleTarget, probe_modules
from tests.subinterp.conftest import DATETIME_TEARDOWN_CRASH

pytestmark = pytest.mark.slow


def _by_module(result: dict) -> dict[str, dict]:
    return {row["module"]: row for row in result["rows"]}


@pytest.fixture(scope="module")
def corpus_result(corpus_site_packages, python313):
    pytest.importorskip("interpkit.analyzer.elf.analyze", reason="the ELF analyzer is not in this tree")
    return verify_site_packages(corpus_site_packages, python313, n=2)


def test_corpus_observations_are_what_the_wheels_do(corpus_site_packages, python313):
    """The probe alone, no analyzer: a few behaviours of the pinned wheels, measured once."""
    wanted = {"xxhash._xxhash", "crc32c._crc32c", "markupsafe._speedups", "orjson.orjson",
              "numpy._core._multiarray_umath", "_time_machine"}
    targets = [ModuleTarget(name, path) for path in corpus_site_packages.rglob("*.so")
               if (name := site_module_name(path, corpus_site_packages)) in wanted]
    outcomes = probe_modules(targets, python=python313, sys_path=(str(corpus_site_packages),),
                             batch_size=1)
    assert set(outcomes) == wanted
    # Declares Py_MOD_PER_INTERPRETER_GIL_SUPPORTED and keeps its state per module.
    assert outcomes["xxhash._xxhash"].status == "ok"
    assert outcomes["crc32c._crc32c"].status == "ok"
    # No declaration (single-phase, or multi-phase without the slot): CPython refuses.
    for name in ("markupsafe._speedups", "orjson.orjson"):
        assert outcomes[name].status == "import_error", name
        assert "does not support loading in subinterpreters" in outcomes[name].message
    # numpy 2.1.3 on 3.13.0: refusing its multi-phase module corrupts the heap (abort).
    assert outcomes["numpy._core._multiarray_umath"].status == "crash"
    assert outcomes["numpy._core._multiarray_umath"].steps[-1]["step"] == "import"
    # Declares own-GIL support, but swaps process-global function pointers of the `time`
    # module: tearing down its interpreters corrupts the heap.
    assert outcomes["_time_machine"].status == "crash"
    assert outcomes["_time_machine"].steps[-1]["step"] == "destroy"


def test_corpus_agreement(corpus_result):
    summary = corpus_result["summary"]
    print()
    print(f"corpus: {corpus_result['probed']} modules probed, agreement {corpus_result['agreement']}"
          f" over {summary['decided']} decided, {corpus_result['agreement_all']} over all observed")
    for predicted, row in corpus_result["status_matrix"].items():
        print(f"  predicted {predicted:>7}: {row}")
    for row in corpus_result["disagreements"]:
        print(f"  differs: {row['module']} predicted {row['predicted']} observed {row['status']}"
              f" {row['codes']} {row['message'][:80]}")
    for row in corpus_result["left_out"]:
        print(f"  left out: {row['module']} {row['status']}: {row['reason'][:160]}")
    assert corpus_result["probed"] >= 50
    assert corpus_result["compared"] >= corpus_result["probed"] - 3
    assert corpus_result["crashes_predicted_safe"] == []
    assert corpus_result["agreement"] >= 0.95
    assert corpus_result["agreement_all"] >= 0.95


def test_corpus_rows_carry_prediction_and_observation(corpus_result):
    rows = _by_module(corpus_result)
    assert rows["xxhash._xxhash"]["status"] == "ok"
    assert rows["markupsafe._speedups"]["status"] == "import_error"
    for row in rows.values():
        assert row["predicted"] in ("ok", "fail", "unknown")
        assert row["status"] in ("ok", "import_error", "crash", "hang", "error", "skipped")


def test_crash_caused_by_a_dependency_is_pinned_on_it(corpus_result, python313):
    """_time_machine imports `datetime`; on CPython 3.13.0 `_datetime` itself crashes when two
    isolated interpreters that imported it are destroyed. The comparison leaves the row out
    and names the dependency, instead of blaming the analyzer's verdict for _time_machine."""
    if python313.version != DATETIME_TEARDOWN_CRASH:
        pytest.skip(f"the _datetime teardown crash is CPython 3.13.0's (this is {python313.version})")
    row = _by_module(corpus_result)["_time_machine"]
    # The crash is at teardown: the row's status is what import and use showed, the probe's
    # own outcome (and the row's teardown) says it crashed.
    assert row["outcome"]["status"] == "crash", row
    assert row["teardown"]["status"] == "crash" and row["teardown"]["step"] == "destroy"
    assert row["outcome"]["blamed_on"] == "_datetime"
    assert "_time_machine" in {r["module"] for r in corpus_result["left_out"]}


def test_verify_command_on_the_corpus_prints_the_agreement(corpus_site_packages):
    """The user-facing form: `interpkit verify --site-packages DIR --python 3.13`."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "interpkit", "verify", "--site-packages", str(corpus_site_packages),
                           "--python", "3.13", "--format", "json"], capture_output=True, text=True, timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    summary = data["summary"]
    assert summary["decided"] >= 40
    assert summary["agreement"] >= 0.95
    assert summary["crashes_predicted_safe"] == []
    # A failed teardown fails the run too (its reason is in the row's teardown).
    assert proc.returncode == (0 if summary["agreed"] == summary["decided"] and not summary["teardown_failures"]
                               else 1)
    table = subprocess.run([sys.executable, "-m", "interpkit", "verify", "--site-packages", str(corpus_site_packages),
                            "--python", "3.13"], capture_output=True, text=True, timeout=900)
    assert "agreement:" in table.stdout and "Traceback" not in table.stderr
