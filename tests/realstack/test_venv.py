"""The real-stack venv holds the pinned stack and imports interpkit from this checkout."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.realstack

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, torch, torchvision, transformers, interpkit
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "torchvision": torchvision.__version__,
                  "transformers": transformers.__version__, "interpkit": interpkit.__file__}))
"""


def _pins() -> dict[str, str]:
    lines = (REPO_ROOT / "fixtures" / "realstack" / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def test_venv_has_the_pinned_default_torch_build_and_this_checkout(realstack_python):
    done = subprocess.run([realstack_python, "-c", PROBE], capture_output=True, text=True, timeout=300,
                          cwd="/")
    assert done.returncode == 0, done.stderr[-1500:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    pins = _pins()
    # The local version part names the build (+cu130); the pin names the release.
    for name in ("torch", "torchvision", "transformers"):
        assert found[name].split("+")[0] == pins[name], (name, found[name])
    assert found["cuda"]  # the CUDA-enabled build a user gets by default
    assert Path(found["interpkit"]).resolve() == REPO_ROOT / "interpkit" / "__init__.py"
