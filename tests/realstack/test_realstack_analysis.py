"""The analyzer on the real stack a user gets (default CUDA torch build, torchvision, transformers):
op libraries reached through torch.ops.load_library, the closure the loader really uses,
verify's observation of an op library in two namespaces, and the trace (integration)."""
from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.realstack

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"
DETECTOR = MODELS / "tiny_detector" / "detector.py"
LM = MODELS / "tiny_lm" / "lm.py"


def interpkit(python: str, *args: str, cwd: Path) -> tuple[int, dict]:
    done = subprocess.run([python, "-m", "interpkit", *args, "--format", "json"], capture_output=True, text=True,
                          timeout=1500, cwd=cwd)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="module")
def detector_scan(realstack_python, tmp_path_factory):
    _, report = interpkit(realstack_python, "scan", str(DETECTOR), cwd=tmp_path_factory.mktemp("scan"))
    return report


def _op_libraries(report: dict) -> list[dict]:
    return [f for f in report["files"] if f.get("facts", {}).get("loaded_by")]


def test_detector_scan_reaches_torchvisions_op_libraries_and_their_closure(detector_scan):
    op_libraries = _op_libraries(detector_scan)
    loaders = {f["facts"]["loaded_by"]["module"] for f in op_libraries}
    assert "torchvision.extension" in loaders        # _load_library("_C...") -> torch.ops.load_library
    [ops] = [f for f in op_libraries if f["facts"]["loaded_by"]["module"] == "torchvision.extension"]
    assert Path(ops["path"]).parent.name == "torchvision" and ops["kind"] == "library"
    assert "torchvision" in ops["facts"]["op_library"]["namespaces"]
    assert "IK208" in {x["code"] for x in ops["findings"]}
    assert ops["verdicts"] == {"namespaces": "ok", "subinterpreters": "fail", "copies": "fail"}
    assert ops["facts"]["chain"][:3] == ["detector", "torchvision", "torchvision.extension"]
    closure = ops["facts"]["closure"]
    site = Path(ops["path"]).parents[1]
    # libtorch from this environment's torch, libcudart from the nvidia-* wheel torch points at
    assert Path(closure["libtorch_cpu.so"]).is_relative_to(site / "torch" / "lib")
    assert Path(closure["libcudart.so.13"]).is_relative_to(site / "nvidia")
    assert None not in closure.values()
    scanned = {f["path"] for f in detector_scan["files"]}
    assert closure["libtorch_python.so"] in scanned and closure["libcudart.so.13"] in scanned


def test_detector_scan_reports_each_finding_once_and_a_plan_that_exports(detector_scan):
    seen = collections.Counter((f["path"], x["code"], x["message"]) for f in detector_scan["files"] for x in f["findings"])
    assert [key for key, count in seen.items() if count > 1] == []
    paths = [f["path"] for f in detector_scan["files"]]
    assert len(paths) == len(set(paths))
    plan = detector_scan["packaging_plan"]
    assert plan["intern"] == ["detector"]
    assert {"torch", "torchvision"} <= set(plan["extern"])
    check = plan["export_check"]
    assert check["ran"] and check["ok"] and check["loads"], check


def test_verify_observes_torchvisions_op_library_in_two_namespaces(realstack_python, detector_scan, tmp_path):
    [ops] = [f for f in _op_libraries(detector_scan) if f["facts"]["loaded_by"]["module"] == "torchvision.extension"]
    _, report = interpkit(realstack_python, "verify", ops["path"], "-n", "2", cwd=tmp_path)
    [row] = report["results"]
    assert row["status"] != "skipped" and row["observed"] in ("ok", "fail"), row
    loads = [s for s in row["outcome"]["steps"] if s["step"] == "import" and "op_library" in s]
    assert [s["interpreter"] for s in loads] == [0, 1], row["outcome"]["steps"]
    for step in loads:   # each namespace has its own libtorch: the namespace registers in each
        assert step["op_library"]["namespaces"] == ["torchvision"] and step["op_library"]["registered"] > 0
        assert step["op_library"]["call"]["op"], step


def test_trace_reaches_the_tokenizer_extension_transformers_imports_lazily(realstack_python, tmp_path):
    _, report = interpkit(realstack_python, "scan", str(LM), "--trace", f"{LM}:run", cwd=tmp_path)
    [trace] = report["trace"]
    assert trace["ok"], trace
    assert any(name.startswith("tokenizers.") for name in trace["extensions_only_in_trace"])
    [tokenizers] = [f for f in report["files"] if f.get("module", "").startswith("tokenizers.")]
    assert tokenizers["facts"]["found_by"] == "trace" and tokenizers["facts"]["generator"] == "pyo3"
    static = [f for f in report["files"] if f["kind"] == "extension" and not f.get("facts", {}).get("found_by")]
    assert static and not any("tokenizers" in f["path"] for f in static)
    assert report["packaging_plan"]["intern"] == ["lm"]


def test_torchvision_next_to_a_cpu_torch_cannot_load_anywhere(realstack_python, torch_dir, tmp_path):
    """The index's torchvision needs the CUDA build's libtorch_cuda.so; installed beside the CPU
    build of torch (this Python's), that DT_NEEDED resolves nowhere: IK306, fail everywhere, exit 1."""
    done = subprocess.run([realstack_python, "-c", "import importlib.util as u; print(u.find_spec('torchvision').origin)"],
                          capture_output=True, text=True, timeout=120)
    package = Path(done.stdout.strip()).parent
    site = tmp_path / "site-packages"
    (site / "torchvision").mkdir(parents=True)
    (site / "torch").symlink_to(torch_dir, target_is_directory=True)
    [ops] = [p for p in package.glob("_C*.so")]
    copy = site / "torchvision" / ops.name
    copy.write_bytes(ops.read_bytes())
    code, report = interpkit(sys.executable, "scan", str(copy), cwd=tmp_path)
    assert code == 1
    [entry] = [f for f in report["files"] if f["path"] == str(copy)]
    missing = {x["symbol"] for x in entry["findings"] if x["code"] == "IK306"}
    assert "libtorch_cuda.so" in missing
    assert all(x["severity"] == "error" for x in entry["findings"] if x["code"] == "IK306")
    assert set(entry["verdicts"].values()) == {"fail"}
