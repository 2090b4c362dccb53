"""One exit-status contract for every subcommand (README, "Output and exit status").

0 clean; 1 findings, disagreements or failed checks at or above the threshold; 2 bad command
line or unusable input. Every case runs the real command in a child process.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def interpkit(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "interpkit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def assert_usage_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert "error:" in last, proc.stderr
    for word in words:
        assert word in last, last


@pytest.fixture()
def inputs(tmp_path) -> dict[str, Path]:
    """Unusable inputs shared by every subcommand: a missing path, random bytes named .so, an empty folder."""
    random_so = tmp_path / "random.so"
    random_so.write_bytes(bytes(range(256)) * 16)
    empty = tmp_path / "empty"
    empty.mkdir()
    broken_wheel = tmp_path / "broken-0.1-py3-none-any.whl"
    broken_wheel.write_bytes(b"PK\x03\x04 not a zip at all")
    return {"missing": tmp_path / "missing.so", "random_so": random_so, "empty": empty, "broken_wheel": broken_wheel}


@pytest.fixture()
def clean_folder(tmp_path, built_fixtures) -> Path:
    folder = tmp_path / "clean"
    folder.mkdir()
    shutil.copy2(built_fixtures("clean"), folder)
    return folder


# ----------------------------------------------------------------------------------------- scan

def test_scan_clean_findings_and_exit_zero(tmp_path):
    clean = tmp_path / "ok.py"
    clean.write_text("def forward(x):\n    return x\n")
    forks = tmp_path / "forks.py"
    forks.write_text("import os\n\nos.fork()\n")
    assert interpkit("scan", "--no-follow-imports", clean).returncode == 0
    assert interpkit("scan", "--no-follow-imports", forks).returncode == 1
    shown = interpkit("scan", "--no-follow-imports", "--exit-zero", forks)
    assert shown.returncode == 0 and "IK403" in shown.stdout   # still shows what it finds
    assert interpkit("scan", "--no-follow-imports", "--ignore", "IK403", forks).returncode == 0


@pytest.mark.parametrize("option", ["--select", "--ignore"])
@pytest.mark.parametrize("codes", ["IK999", "IK2,IK9999", "XYZ"])
def test_scan_unknown_rule_code_is_a_usage_error(tmp_path, option, codes):
    assert_usage_error(interpkit("scan", option, codes, tmp_path), "unknown rule code")


def test_scan_known_prefixes_are_accepted(tmp_path):
    for codes in ("ALL", "IK", "IK2", "IK203", "ik4"):
        assert interpkit("scan", "--select", codes, tmp_path).returncode == 0, codes


def test_scan_unknown_rule_code_in_pyproject_is_a_usage_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.interpkit]\nignore = ["IK2", "IK777"]\n')
    assert_usage_error(interpkit("scan", tmp_path), "IK777")


def test_scan_unusable_inputs(inputs):
    assert_usage_error(interpkit("scan", inputs["missing"]), "no such file")
    # An unreadable file among the inputs is a finding-like result (1); nothing to scan is clean (0).
    assert interpkit("scan", inputs["random_so"]).returncode == 1
    assert interpkit("scan", inputs["empty"]).returncode == 0


# --------------------------------------------------------------------------------------- verify

def test_verify_clean_and_failed_checks(clean_folder, inputs):
    assert interpkit("verify", clean_folder).returncode == 0
    # One module verified, one input unreadable: a failed check (1), and --exit-zero says 0.
    shutil.copy2(inputs["random_so"], clean_folder / "random.so")
    mixed = interpkit("verify", clean_folder)
    assert mixed.returncode == 1 and "random.so" in mixed.stdout
    assert interpkit("verify", "--exit-zero", clean_folder).returncode == 0


@pytest.mark.parametrize(("args", "words"), [
    (["-n", "100"], ["--interpreters 100", "at most 15"]),
    (["--timeout", "0"], ["--timeout"]),
    (["--timeout", "-5"], ["--timeout"]),
    (["-n", "0"], ["--interpreters"]),
])
def test_verify_out_of_range_counts_are_usage_errors(clean_folder, args, words):
    assert_usage_error(interpkit("verify", clean_folder, *args), *words)


@pytest.mark.parametrize(("name", "words"), [
    ("missing", ["no such file"]), ("random_so", ["not an ELF file"]), ("empty", ["no extension modules"]),
    ("broken_wheel", ["not a valid zip archive"]),
])
def test_verify_unusable_input_is_a_usage_error(inputs, name, words):
    assert_usage_error(interpkit("verify", inputs[name]), *words)


# ---------------------------------------------------------------------------------------- patch

def test_patch_clean_unfixed_and_check(tmp_path, built_fixtures, clean_folder):
    assert interpkit("patch", clean_folder, "-o", tmp_path / "out", "--no-verify", "--backend", "namespaces").returncode == 0
    # For every backend the clean fixture still lacks the per-interpreter GIL slot: unfixed (1).
    unfixed = interpkit("patch", clean_folder, "-o", tmp_path / "all", "--no-verify")
    assert unfixed.returncode == 1 and "unfixed" in unfixed.stdout
    unique = tmp_path / "unique"
    unique.mkdir()
    shutil.copy2(built_fixtures("gnu_unique_cpp"), unique)
    would_change = interpkit("patch", unique, "--check")
    assert would_change.returncode == 1, would_change.stdout + would_change.stderr
    assert interpkit("patch", unique, "--check", "--exit-zero").returncode == 0


@pytest.mark.parametrize(("args", "words"), [
    (["-n", "100"], ["--interpreters 100"]),
    (["--timeout", "0"], ["--timeout"]),
])
def test_patch_out_of_range_counts_are_usage_errors(tmp_path, clean_folder, args, words):
    assert_usage_error(interpkit("patch", clean_folder, "-o", tmp_path / "out", *args), *words)


@pytest.mark.parametrize(("name", "words"), [
    ("missing", ["no such file"]), ("random_so", ["not an ELF file"]), ("empty", ["nothing to patch"]),
    ("broken_wheel", ["not a valid zip archive"]),
])
def test_patch_unusable_input_is_a_usage_error(tmp_path, inputs, name, words):
    assert_usage_error(interpkit("patch", inputs[name], "-o", tmp_path / "out"), *words)


# --------------------------------------------------------------------------------------- memory

def test_memory_clean_and_failed_measurement(clean_folder):
    assert interpkit("memory", clean_folder, "--estimate-only").returncode == 0
    failed = interpkit("memory", "--import", "json", "--call", "json:no_such_function", "-n", "1")
    assert failed.returncode == 1 and "no_such_function" in failed.stdout
    assert interpkit("memory", "--import", "json", "--call", "json:no_such_function", "-n", "1",
                     "--exit-zero").returncode == 0


@pytest.mark.parametrize(("args", "words"), [
    (["-n", "1,100"], ["--interpreters 100"]),
    (["--timeout", "0"], ["--timeout"]),
    (["--memory-limit", "0"], ["--memory-limit"]),
])
def test_memory_out_of_range_counts_are_usage_errors(args, words):
    assert_usage_error(interpkit("memory", "--import", "json", *args), *words)


@pytest.mark.parametrize(("name", "words"), [
    ("missing", ["no such file"]), ("random_so", ["not an ELF file"]), ("empty", ["no extension modules"]),
])
def test_memory_unusable_input_is_a_usage_error(inputs, name, words):
    assert_usage_error(interpkit("memory", inputs[name], "--estimate-only"), *words)


# ------------------------------------------------------------------------------------------ run
# 0 (answers equal) and 1 (a stateful model's answers differ) are in tests/serve/test_serve_run.py.

@pytest.mark.parametrize(("args", "words"), [
    (["-n", "100"], ["--interpreters 100"]),
    (["--timeout", "0"], ["--timeout"]),
    (["-k", "0"], ["--requests"]),
])
def test_run_out_of_range_counts_are_usage_errors(tmp_path, args, words):
    archive = tmp_path / "model.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/.data/version", "6\n")
    assert_usage_error(interpkit("run", archive, *args), *words)


@pytest.mark.parametrize(("name", "words"), [
    ("missing", ["no such file"]), ("random_so", ["not a torch.package archive"]), ("empty", ["not a file"]),
])
def test_run_unusable_input_is_a_usage_error(inputs, name, words):
    assert_usage_error(interpkit("run", inputs[name]), *words)


# ---------------------------------------------------------------------------------------- rules

def test_rules_known_and_unknown_code():
    assert interpkit("rules", "IK902").returncode == 0
    assert_usage_error(interpkit("rules", "IK999"), "no such rule")


def test_scan_backend_judges_only_what_that_runtime_needs(tmp_path):
    """Issue 24 (13): numpy's extensions have subinterpreters-only errors (IK102): a model that
    imports numpy made every scan exit 1, also for someone serving with namespaces. --backend
    (or [tool.interpkit] backend) keeps only the findings that affect the named runtimes."""
    import json

    model = tmp_path / "model.py"
    model.write_text("import numpy\n")
    reports = {}
    for name, extra in (("all", ()), ("namespaces", ("--backend", "namespaces")),
                        ("subinterpreters", ("--backend", "subinterpreters"))):
        done = interpkit("scan", model, "--format", "json", "--no-closure", *extra, cwd=tmp_path)
        reports[name] = (done.returncode, {(f["code"], tuple(f["backends"]))
                                           for fr in json.loads(done.stdout)["files"] for f in fr["findings"]})
    assert reports["all"][0] == 1 and ("IK102", ("subinterpreters",)) in reports["all"][1]
    assert reports["subinterpreters"] == reports["all"][:1] + ({f for f in reports["all"][1]
                                                                 if "subinterpreters" in f[1]},)
    assert reports["namespaces"][0] == 0
    assert reports["namespaces"][1] == {f for f in reports["all"][1] if "namespaces" in f[1]}
    (tmp_path / "pyproject.toml").write_text('[tool.interpkit]\nbackend = "namespaces"\n')
    assert interpkit("scan", model, "--no-closure", "-q", cwd=tmp_path).returncode == 0
    (tmp_path / "pyproject.toml").write_text('[tool.interpkit]\nbackend = "nowhere"\n')
    assert_usage_error(interpkit("scan", model, cwd=tmp_path), "unknown backend")
    assert_usage_error(interpkit("scan", model, "--backend", "nowhere", cwd=tmp_path), "unknown backend")


def test_scan_trace_alone_names_the_model(tmp_path):
    """Issue 24 (7): `interpkit scan --trace model.py` (as the README writes it) failed with
    "PATH required": --trace's optional value took the only path. No path at all stays exit 2."""
    model = tmp_path / "model.py"
    model.write_text("import json\n\n\ndef build():\n    return json.dumps([1])\n")
    done = interpkit("scan", "--trace", model, "--format", "json", "--no-closure", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    import json

    report = json.loads(done.stdout)
    assert [t["target"] for t in report["trace"]] == [str(model)] and report["trace"][0]["ok"]
    assert any(fr["path"] == str(model) for fr in report["files"])
    assert_usage_error(interpkit("scan", cwd=tmp_path), "PATH")
