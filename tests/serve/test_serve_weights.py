"""`run`'s weights are mapped from the archive: the model's storages lie in a file mapping of it
(as /proc/self/maps says inside each interpreter) and the answers equal those of copied weights.

Nothing is timed or sized here: what the mapping saves in Pss is bench/weights_sharing.py's job.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HAS_TORCH = __import__("importlib.util").util.find_spec("torch") is not None
pytestmark = [pytest.mark.torch, pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")]

# Two Linear layers (weights and biases: four storages) and four example requests.
_EXPORT = """
import sys, torch
from interpkit.serve.server import export_model
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 8)).eval()
export_model(sys.argv[1], model, [torch.randn(1, 64) for _ in range(4)])
"""
_WEIGHT_BYTES = (64 * 48 + 48 + 48 * 8 + 8) * 4
# The example requests are tensors too, read from the archive the same way: 4 more storages.
_STORAGES, _STORAGE_BYTES = 4 + 4, _WEIGHT_BYTES + 4 * 64 * 4


@pytest.fixture(scope="module")
def mlp_archive(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("weights") / "mlp.pt"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", _EXPORT, str(out)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    return out


def _serve(archive: Path, interpreters: int, weights: str):
    from interpkit.serve.server import serve_package

    return serve_package(archive, interpreters=interpreters, requests=8, batch=1, keep_answers=True,
                         threads_per_interpreter=1, weights=weights, timeout=300)


def test_mapped_weights_are_file_backed_and_answer_as_copied(mlp_archive):
    mapped = _serve(mlp_archive, 2, "mapped")
    facts = mapped.model["weights"]
    assert facts["weights"] == "mapped"
    assert (facts["mapped_storages"], facts["mapped_bytes"]) == (_STORAGES, _STORAGE_BYTES)
    assert facts["copied_storages"] == 0
    # The kernel's view, inside the interpreter: every byte of the model's tensors is in the archive's mapping.
    assert (facts["file_backed_bytes"], facts["heap_bytes"]) == (_WEIGHT_BYTES, 0)
    assert mapped.check.equal is True and mapped.check.compared == 8

    copied = _serve(mlp_archive, 1, "copied")
    assert (copied.model["weights"]["file_backed_bytes"], copied.model["weights"]["heap_bytes"]) == (0, _WEIGHT_BYTES)
    assert len(mapped.answers) == 8 and mapped.answers == copied.answers


def test_compressed_records_are_copied(mlp_archive, tmp_path):
    """An archive rewritten with its records deflated has no byte range to map: each storage is read as before."""
    rewritten = tmp_path / "deflated.pt"
    with zipfile.ZipFile(mlp_archive) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    served = _serve(rewritten, 1, "mapped")
    facts = served.model["weights"]
    assert (facts["mapped_storages"], facts["copied_storages"], facts["copied_bytes"]) == (0, _STORAGES, _STORAGE_BYTES)
    assert (facts["file_backed_bytes"], facts["heap_bytes"]) == (0, _WEIGHT_BYTES)
    assert served.answers == _serve(mlp_archive, 1, "mapped").answers


def test_unknown_weights_choice_is_one_line(mlp_archive):
    from interpkit.core.errors import InputError

    with pytest.raises(InputError, match="cannot serve with weights 'shared'"):
        _serve(mlp_archive, 1, "shared")


def test_the_command_line_chooses_copied_weights(mlp_archive):
    import json

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "interpkit", "run", str(mlp_archive), "-n", "1", "-k", "4",
                           "--weights", "copied", "--format", "json"], capture_output=True, text=True, timeout=300,
                          env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    weights = json.loads(done.stdout)["model"]["weights"]
    assert (weights["weights"], weights["file_backed_bytes"], weights["heap_bytes"]) == ("copied", 0, _WEIGHT_BYTES)
