"""`interpkit verify` end to end: real fixture builds, real runtimes, prediction vs observation."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# What each fixture does when N interpreters import and use it. Namespaces give every
# interpreter its own copy of every library, so each fixture loads and keeps its state apart.
# Isolated subinterpreters refuse single-phase init and a missing per-GIL slot (any PyInit_*
# of the binary), and share a static type object between interpreters.
SUBINTERPRETERS_STATUS = {
    "clean": "ok", "multi_phase_isolated": "ok", "gilstate": "ok", "initial_exec_tls": "ok",
    "gnu_unique_cpp": "ok", "clash_a": "ok", "clash_b": "ok", "static_type": "ok",
    "single_phase_static": "import_error", "multi_phase_no_slot": "import_error", "mixed_init": "import_error",
}
SHARED_UNDER_SUBINTERPRETERS = {"static_type"}
NAMESPACES = sorted([*SUBINTERPRETERS_STATUS, "pybind11_module"])


def _verify(folder, *args) -> dict:
    proc = subprocess.run([sys.executable, "-m", "interpkit", "verify", str(folder), "--format", "json", *args],
                          capture_output=True, text=True, timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    assert proc.returncode == (0 if data["summary"]["agreed"] == data["summary"]["decided"] else 1)
    return data


def _folder_of(tmp_path, built_fixtures, names, python=sys.executable):
    for name in names:
        path = built_fixtures(name, python)
        shutil.copy2(path, tmp_path / path.name)
    return tmp_path


@pytest.mark.parametrize("n", [2, 4])
def test_every_fixture_loads_apart_in_n_namespaces(tmp_path, built_fixtures, n):
    folder = _folder_of(tmp_path, built_fixtures, NAMESPACES)
    data = _verify(folder, "-n", str(n))
    rows = {r["module"]: r for r in data["results"]}
    assert sorted(rows) == NAMESPACES
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["message"])
        assert row["outcome"]["shared_state"] == [], name
        assert row["predicted"] == "ok" and row["agrees"] is True, name
    assert data["summary"]["agreement"] == 1.0


def test_isolated_subinterpreters_observed_as_predicted(tmp_path, built_fixtures, python_for):
    python = python_for("3.13")
    folder = _folder_of(tmp_path, built_fixtures, sorted(SUBINTERPRETERS_STATUS), python)
    data = _verify(folder, "--python", "3.13", "-n", "2")
    rows = {r["module"]: r for r in data["results"]}
    assert {name: row["status"] for name, row in rows.items()} == SUBINTERPRETERS_STATUS
    shared = {name for name, row in rows.items() if row["outcome"].get("shared_state")}
    assert shared == SHARED_UNDER_SUBINTERPRETERS
    disagreements = {name: (row["predicted"], row["observed"]) for name, row in rows.items() if row["agrees"] is False}
    assert disagreements == {}
    assert data["summary"]["crashes_predicted_safe"] == []


def test_extension_for_another_python_runs_in_namespaces_of_that_python(tmp_path, built_fixtures, python_for):
    folder = _folder_of(tmp_path, built_fixtures, ["clean"], python_for("3.13"))
    data = _verify(folder)  # the namespaces runtime built for 3.13, in a child of 3.13
    [row] = data["results"]
    assert row["status"] == "ok" and row["python"].startswith("3.13."), row


def test_a_library_missing_where_the_probe_runs_is_not_agreement(tmp_path):
    """Issue 24 (9): the copies probe failed on "libtorch_python.so: cannot open shared object
    file" and the row read `agree` with a predicted registry abort: any failure counted as the
    predicted one. Here a real extension (single_phase_static, predicted ok) needs a library
    that is there when scanned and gone when probed: that failure is neither agreement nor
    disagreement, the row is undecided and says why."""
    import sysconfig

    from fixtures.build import FIXTURES_DIR
    from interpkit.analyzer.config import Config
    from interpkit.analyzer.scan import scan_paths
    from interpkit.analyzer.verification.verify import verify_results
    from interpkit.core.findings import Backend, Verdict

    dependency = tmp_path / "libik_dependency.so"
    (tmp_path / "dep.c").write_text("int ik_dependency(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(dependency), str(tmp_path / "dep.c")], check=True)
    extension = tmp_path / f"single_phase_static{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-I", sysconfig.get_paths()["include"],
                    str(FIXTURES_DIR / "single_phase_static" / "module.c"), "-o", str(extension),
                    f"-L{tmp_path}", "-Wl,--no-as-needed", "-lik_dependency", "-Wl,-rpath,$ORIGIN"], check=True)
    report = scan_paths([extension], Config(follow_imports=False), only="elf")
    scanned = [fr for fr in report.files if Path(fr.path).name == extension.name]
    assert scanned[0].verdicts[Backend.NAMESPACES] is Verdict.OK
    dependency.unlink()
    [row] = verify_results(scanned, Backend.NAMESPACES, interpreters=2, timeout=120)
    assert row.status == "import_error" and "cannot open shared object file" in row.message
    assert row.observed is Verdict.UNKNOWN and row.agrees is None
    assert "no finding predicts" in row.to_json()["undecided_because"]


def test_extension_for_a_missing_python_is_skipped_with_the_reason(tmp_path, built_fixtures, python_for, monkeypatch):
    folder = _folder_of(tmp_path, built_fixtures, ["clean"], python_for("3.13"))
    monkeypatch.setenv("PATH", str(tmp_path))           # no pyenv, no python3.13 to find
    monkeypatch.setenv("INTERPKIT_PYTHONS", "")
    [row] = _verify(folder)["results"]
    assert row["status"] == "skipped" and row["python"] is None
    assert row["message"].startswith("needs CPython 3.13 (built for cpython-313-x86_64-linux-gnu)"), row["message"]
