"""`interpkit run` on the example torch.package model: answers equal one interpreter, JSON shape, errors.

Every run of the runtime happens in a child process (a crash or hang costs one test, not
pytest), and nothing here is timed: throughput and latency are only checked for shape.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from interpkit.cli import main
from interpkit.serve.server import JSON_SCHEMA, SCHEMA

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HAS_TORCH = __import__("importlib.util").util.find_spec("torch") is not None
requires_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
CHILD_TIMEOUT_S = 420


def _child(argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTHONHASHSEED", None)
    return subprocess.run(argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL)


def _interpkit(*args: str) -> subprocess.CompletedProcess:
    return _child([sys.executable, "-m", "interpkit", "run", *args])


@pytest.fixture(scope="module")
def example_archive(tmp_path_factory) -> Path:
    if not HAS_TORCH:
        pytest.skip("torch is not installed")
    out = tmp_path_factory.mktemp("serve") / "example_mlp.pt"
    done = _child([sys.executable, str(REPO_ROOT / "fixtures/models/make_example_package.py"), str(out),
                   "--requests", "16", "--words", "40"])
    assert done.returncode == 0, done.stderr
    return out


def _export(out: Path, model_class: str, requests: list) -> Path:
    code = (f"import sys; sys.path[:0] = [{str(HERE)!r}, {str(REPO_ROOT)!r}]\n"
            "from interpkit.serve.server import export_model\n"
            f"from ik_serve_models import {model_class}\n"
            f"export_model({str(out)!r}, {model_class}(), {requests!r}, intern=['ik_serve_models'])\n")
    done = _child([sys.executable, "-c", code])
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.torch
@requires_torch
def test_two_interpreters_json_report(example_archive):
    done = _interpkit(str(example_archive), "--interpreters", "2", "--requests", "24", "--batch", "3",
                      "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(data, JSON_SCHEMA)
    assert data["schema"] == SCHEMA
    assert data["model"]["model_type"] == "interpkit_example.pipeline.TextClassifier"
    assert data["model"]["batch_method"] is True and data["model"]["example_requests"] == 16
    assert (data["interpreters"], data["requests"], data["batch"]) == (2, 24, 3)
    assert [entry["index"] for entry in data["per_interpreter"]] == [0, 1]
    assert sum(entry["requests"] for entry in data["per_interpreter"]) == 24
    assert data["check"] == {"performed": True, "equal": True, "compared": 24, "mismatches": 0,
                             "first_mismatch": None}
    latency = data["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    memory = data["memory"]
    # torch imported in two namespaces: well over 100 MiB, and Rss counts shared pages twice.
    assert memory["pss_bytes"] > 100 << 20 and memory["rss_bytes"] > memory["pss_bytes"]
    assert len(memory["objects_pss_by_interpreter_bytes"]) == 2
    assert all(value > 0 for value in memory["objects_pss_by_interpreter_bytes"])


_REFERENCE = """\
import json, sys, torch
from torch.package import PackageImporter
importer = PackageImporter(sys.argv[1])
model = importer.load_pickle("interpkit", "model.pkl")
requests = importer.load_pickle("interpkit", "requests.pkl")
torch.set_num_threads(1)
count, batch = int(sys.argv[2]), int(sys.argv[3])
answers = []
for start in range(0, count, batch):
    answers += model.batch([requests[i % len(requests)] for i in range(start, min(start + batch, count))])
print(json.dumps(answers))
"""

_SERVED = """\
import json, sys
from interpkit.serve.server import serve_package
result = serve_package(sys.argv[1], interpreters=2, requests=int(sys.argv[2]), batch=int(sys.argv[3]),
                       keep_answers=True, check=False)
print(json.dumps({"answers": result.answers, "served": result.per_interpreter_requests}))
"""


@pytest.mark.torch
@requires_torch
def test_answers_equal_the_model_run_without_the_runtime(example_archive):
    # An independent reference: the archive loaded by plain PackageImporter in a process of its own.
    args = [str(example_archive), "20", "2"]
    reference = _child([sys.executable, "-c", _REFERENCE, *args])
    assert reference.returncode == 0, reference.stderr
    served = _child([sys.executable, "-c", _SERVED, *args])
    assert served.returncode == 0, served.stderr
    data = json.loads(served.stdout)
    expected = json.loads(reference.stdout)
    assert len(expected) == 20 and [answer["id"] for answer in expected] == [i % 16 for i in range(20)]
    assert data["answers"] == expected
    assert sum(data["served"]) == 20


@pytest.mark.torch
@requires_torch
def test_table_output(example_archive):
    done = _interpkit(str(example_archive), "-n", "2", "-k", "6", "--no-check")
    assert done.returncode == 0, done.stderr
    for label in ("throughput", "latency p50", "latency p99", "memory Pss (process)", "not checked"):
        assert label in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.torch
@requires_torch
def test_stateful_model_fails_the_check(tmp_path):
    archive = _export(tmp_path / "counting.pt", "CountingModel", [1, 2, 3])
    done = _interpkit(str(archive), "-n", "2", "-k", "10", "--format", "json")
    assert done.returncode == 1, done.stderr
    check = json.loads(done.stdout)["check"]
    assert check["performed"] and check["equal"] is False and check["mismatches"] > 0


@pytest.mark.torch
@requires_torch
def test_model_that_raises_is_one_line(tmp_path):
    archive = _export(tmp_path / "failing.pt", "FailingModel", [5])
    done = _interpkit(str(archive), "-n", "2", "-k", "4")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(rf"interpkit: error: cannot serve {re.escape(str(archive))} \(interpreter [01] raised "
                        r"ValueError: cannot answer request 5 \(always fails\)\)", lines[0]), lines[0]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "missing.pt", "(no such file)"),
    (lambda d: d, "(not a file)"),
    (lambda d: (d / "text.pt").write_text("hello") and d / "text.pt", "(not a torch.package archive: "),
    (lambda d: _zip(d / "plain.zip", {"a/b.txt": b"x"}), "(not a torch.package archive (no .data/version))"),
    (lambda d: _zip(d / "nomodel.pt", {"m/.data/version": b"6\n", "m/interpkit/requests.pkl": b""}),
     "(no resource interpkit/model.pkl"),
    (lambda d: _zip(d / "norequests.pt", {"m/.data/version": b"6\n", "m/interpkit/model.pkl": b""}),
     "(no resource interpkit/requests.pkl"),
])
def test_bad_archive_is_one_line_exit_2(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"interpkit: error: cannot serve {path} ") and message in err
    assert len(err.splitlines()) == 1


@pytest.mark.torch
@requires_torch
def test_teardown_crash_keeps_the_report(tmp_path):
    """The interpreters abort while they are torn down, after serving: the report is written
    in full, its teardown entry says what happened, and the run fails (exit 1)."""
    archive = _export(tmp_path / "aborts.pt", "AbortsAtExitModel", [1, 2, 3])
    done = _interpkit(str(archive), "-n", "2", "-k", "6", "--format", "json")
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["check"]["equal"] is True and sum(e["requests"] for e in data["per_interpreter"]) == 6
    teardown = data["teardown"]
    assert teardown["status"] == "crash" and teardown["signal"] == "SIGABRT", teardown
    assert teardown["step"] == "close"
    assert "interpkit: teardown failed: crash" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.torch
@requires_torch
def test_threads_per_interpreter_is_used_and_shown(example_archive):
    done = _interpkit(str(example_archive), "-n", "2", "-k", "4", "--threads-per-interpreter", "1",
                      "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["threads_per_interpreter"] == 1 and data["model"]["torch_threads"] == 1
    assert data["teardown"]["status"] == "ok"
    table = _interpkit(str(example_archive), "-n", "2", "-k", "4", "--no-check")
    assert "threads per interpreter" in table.stdout and "teardown" in table.stdout


_HOST = """\
import json, sys
from interpkit.serve.server import serve_package
from interpkit.native.namespaces.runtime import opened_namespaces
result = serve_package(sys.argv[1], interpreters=2, requests=4, check=False)
print(json.dumps({"served": sum(result.per_interpreter_requests), "namespaces": opened_namespaces(),
                  "torch": "torch" in sys.modules}))
"""


@pytest.mark.torch
@requires_torch
def test_the_calling_process_never_hosts_the_runtime(example_archive):
    """serve_package serves from a sandboxed child: the caller opens no namespace, imports no torch."""
    done = _child([sys.executable, "-c", _HOST, str(example_archive)])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"served": 4, "namespaces": 0, "torch": False}


@pytest.mark.torch
@requires_torch
def test_a_failed_export_leaves_no_partial_archive(tmp_path):
    """Issue 24 (11): export_model with a plan that mocks the model's own module fails at the
    end of the export; it used to leave a partial archive that `run` then rejected as corrupt."""
    out = tmp_path / "model.pt"
    out.write_bytes(b"the archive of an earlier export")
    code = (f"import sys; sys.path[:0] = [{str(HERE)!r}, {str(REPO_ROOT)!r}]\n"
            "from interpkit.serve.server import export_model\n"
            "from ik_serve_models import CountingModel\n"
            f"export_model({str(out)!r}, CountingModel(), [1, 2], mock=['ik_serve_models'])\n")
    done = _child([sys.executable, "-c", code])
    assert done.returncode != 0 and "mocked out" in done.stderr, done.stderr[-2000:]
    assert out.read_bytes() == b"the archive of an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    _export(out, "CountingModel", [1, 2])      # a good export replaces it whole, and serves
    assert zipfile.is_zipfile(out)
