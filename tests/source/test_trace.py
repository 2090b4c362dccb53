"""scan --trace: what a model really loads, in a sandboxed child, unioned with the static scan."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.scan import scan_paths
from interpkit.analyzer.tracing.trace import TraceTarget, parse_target, targets_for, with_trace
from interpkit.core.errors import InputError
from interpkit.analyzer.source.batch import analyze_source_files
from interpkit.core.findings import FileKind, Report

REPO_ROOT = Path(__file__).resolve().parents[2]

# The extension's name is computed, so no import statement names it: only running finds it.
LAZY_MODEL = '''import importlib


def build():
    return importlib.import_module("".join(["cle", "an"]))
'''


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))


def test_targets_parse():
    assert parse_target("model.py:build") == TraceTarget(Path("model.py"), "build")
    assert parse_target("model.py:Model.create") == TraceTarget(Path("model.py"), "Model.create")
    assert parse_target("model.py") == TraceTarget(Path("model.py"))


def test_trace_of_a_non_python_target_is_a_usage_error(tmp_path):
    with pytest.raises(InputError, match="not a Python source file"):
        targets_for(str(tmp_path / "nothing.py"), [])
    with pytest.raises(InputError, match="no model .py file"):
        targets_for(True, [tmp_path])


@pytest.mark.integration  # runs the model in a child process
def test_the_trace_finds_an_extension_only_a_call_imports(tmp_path, built_fixtures):
    clean = built_fixtures("clean")
    model = tmp_path / "lazy_model.py"
    model.write_text(LAZY_MODEL)
    config = Config(python_paths=(str(clean.parent),))
    report = scan_paths([model], config)
    assert not [f for f in report.files if f.kind is FileKind.EXTENSION]   # statically invisible

    report = with_trace(report, [TraceTarget(model)], config)
    [summary] = report.extras["trace"]
    assert summary["ok"] and summary["extensions_only_in_trace"] == []     # importing alone loads nothing

    report = with_trace(report, [TraceTarget(model, "build")], config)
    [summary] = report.extras["trace"]
    assert summary["ok"] and summary["extensions_only_in_trace"] == ["clean"]
    [found] = [f for f in report.files if f.kind is FileKind.EXTENSION]
    assert Path(found.path).resolve() == clean.resolve() and found.module == "clean"
    assert found.facts["found_by"] == "trace"
    assert found.facts["chain"] == ["trace", f"{model}:build", "clean"]
    assert found.findings and all(f.chain == ("trace", f"{model}:build", "clean") for f in found.findings)


@pytest.mark.integration
@pytest.mark.parametrize("body,expected", [
    ("import os\nos.abort()\n", "killed by SIGABRT"),
    ("raise RuntimeError('no weights here')\n", "the model raised while importing: RuntimeError: no weights here"),
    ("import time\ntime.sleep(600)\n", "timed out after 3 s"),
])
def test_a_model_that_crashes_raises_or_hangs_is_one_error_entry(tmp_path, body, expected):
    model = tmp_path / "bad_model.py"
    model.write_text(body)
    config = Config()
    # The rule pass alone (scan_paths would also run the export check, which imports the model too).
    report = Report(files=analyze_source_files([model], config))
    before = list(report.files)
    report = with_trace(report, [TraceTarget(model)], config, timeout=3)
    assert report.files[:len(before)] == before            # the scan's own results stand
    [error] = report.files[len(before):]
    assert error.kind is FileKind.ERROR and expected in error.error and "\n" not in error.error
    assert report.extras["trace"][0]["ok"] is False


@pytest.mark.integration
def test_cli_trace_json_keeps_the_report_contract(tmp_path, built_fixtures):
    import jsonschema

    from interpkit.analyzer.report.json import load_schema

    clean = built_fixtures("clean")
    model = tmp_path / "lazy_model.py"
    model.write_text(LAZY_MODEL)
    (tmp_path / "pyproject.toml").write_text(f"[tool.interpkit]\npython-paths = [{str(clean.parent)!r}]\n")
    done = subprocess.run([sys.executable, "-m", "interpkit", "scan", str(model), "--trace", f"{model}:build",
                           "--format", "json"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    jsonschema.validate(report, load_schema())
    assert report["trace"][0]["extensions_only_in_trace"] == ["clean"]
    assert [f["facts"]["found_by"] for f in report["files"] if f["kind"] == "extension"] == ["trace"]
