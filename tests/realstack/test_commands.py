"""`interpkit memory`, `verify` and `run` on the real stack (the index's default CUDA torch
build, torchvision), run by the real-stack venv's python as a user would run them.

Before the sandbox's resident-memory limit, the probe's 4 GiB address-space cap made the CUDA
build fail to map libtorch_cpu.so and the abort that followed was reported as a crash; and the
memory child closed its runtime before writing the sample, so every row was "killed by
SIGABRT"; and `run` served in the CLI process, which then died at teardown with no report.
Each command must now give observed, measured results.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
pytestmark = [pytest.mark.realstack, pytest.mark.slow]

CLI_TIMEOUT_S = 1800   # torch imported in several namespaces on 2 shared cores


def _interpkit(python: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("INTERPKIT_DEBUG", None)
    return subprocess.run([python, "-m", "interpkit", *args], capture_output=True, text=True, errors="replace",
                          env=env, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL, cwd=str(cwd))


def _site_file(python: str, module: str) -> Path:
    done = subprocess.run([python, "-c", f"import importlib.util; print(importlib.util.find_spec({module!r}).origin)"],
                          capture_output=True, text=True, timeout=300, check=True)
    return Path(done.stdout.strip())


def test_memory_of_torchvision_gives_measured_rows(realstack_python, tmp_path):
    done = _interpkit(realstack_python, "memory", "--import", "torchvision", "-n", "1,2", "--backend", "namespaces",
                      "--format", "json",
                      cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    rows = {row["interpreters"]: row for row in report["rows"] if row["backend"] == "namespaces"}
    assert sorted(rows) == [1, 2]
    for row in rows.values():
        assert row["error"] is None, row
    # torch and torchvision in a second namespace cost real memory on top of the first.
    assert rows[2]["total_pss_bytes"] > rows[1]["total_pss_bytes"] > 100 << 20
    # The CUDA libraries declare far more writable pages than a CPU run writes: the prediction
    # repeats what the first namespace wrote of its files, and holds.
    prediction = report["predictions"]["namespaces"]
    assert prediction["files_source"] == "measured"
    assert prediction["files_bytes"] < report["estimate"]["backends"]["namespaces"]["private_per_interpreter_bytes"]
    assert abs(rows[2]["prediction_error"]) <= 0.10, rows[2]
    assert all(not sample.get("teardown") for sample in report["samples"]), report["samples"]


def test_verify_torch_c_is_observed(realstack_python, tmp_path):
    extension = _site_file(realstack_python, "torch._C")
    done = _interpkit(realstack_python, "verify", str(extension), "-n", "2", "--format", "json", cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    report = json.loads(done.stdout)
    [row] = report["results"]
    assert row["module"] == "torch._C"
    # Import and use in both interpreters were observed, not cut short by a crash.
    assert row["status"] == "ok", row["message"]
    steps = [step["step"] for step in row["outcome"]["steps"]]
    assert steps.count("import") == 2 and steps.count("smoke") == 2, steps
    assert "failed to map segment" not in json.dumps(row)
    assert report["summary"]["crashes_predicted_safe"] == []
    # Teardown is its own observation, and the exit status follows it.
    assert row["teardown"] is not None
    if row["teardown"]["status"] == "ok":
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        assert done.returncode == 1 and report["summary"]["teardown_failures"] == ["torch._C"]


_EXPORT = """
import sys
sys.path[:0] = [sys.argv[2]]
from interpkit.serve.server import export_model
from realstack_models import DETECTORS, _image
from realstack_package import Detector
name = "fasterrcnn_mobilenet_v3_large_320_fpn"
export_model(sys.argv[1], Detector(name, DETECTORS[name]), [_image()], intern=["realstack_package"],
             extern=["torchvision.**", "numpy.**"])
"""


def test_run_on_a_torchvision_detector_package_writes_its_report(realstack_python, tmp_path):
    archive = tmp_path / "detector.pt"
    subprocess.run([realstack_python, "-c", _EXPORT, str(archive), str(HERE)], check=True, timeout=CLI_TIMEOUT_S,
                   capture_output=True, stdin=subprocess.DEVNULL)
    report = tmp_path / "run.json"
    done = _interpkit(realstack_python, "run", str(archive), "-n", "2", "-k", "2", "--format", "json",
                      "-o", str(report), cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["model"]["model_type"] == "realstack_package.Detector"
    assert data["check"]["equal"] is True and data["check"]["compared"] == 2
    assert data["threads_per_interpreter"] >= 1
    # The exit status follows the observed teardown; the report is there either way.
    assert done.returncode == (0 if data["teardown"]["status"] == "ok" else 1), (data["teardown"], done.stderr)
