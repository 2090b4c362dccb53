"""torch in namespaced interpreters: a model forward in two at once equals a lone run."""
from __future__ import annotations

import json

import pytest

from tests.runtime.runtime_helpers import requires_torch, run_python

pytestmark = [pytest.mark.torch, requires_torch]

CODE = """
import json, sys
from interpkit.native import Runtime
paths = ["tests/runtime", *sys.path]
with Runtime(1, sys_path=paths, timeout=300) as alone:
    reference = alone.call(0, "ik_torch_model:forward")
with Runtime(2, sys_path=paths, timeout=300) as pair:
    # Both interpreters import torch and run the model at the same time.
    outputs = pair.call_all("ik_torch_model:forward")
    stripped = pair.info(0)["stripped_global_loads"]
print(json.dumps({"reference": reference, "outputs": outputs, "stripped": stripped}))
"""


def test_model_forward_in_two_interpreters_concurrently_equals_single_run():
    result = run_python(CODE, timeout=400)
    assert result.returncode == 0, result.stderr[-1500:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    reference = data["reference"]
    assert len(reference) == 4 and len(reference[0]) == 5
    assert data["outputs"] == [reference, reference]
    # import torch asked for RTLD_GLOBAL (libtorch_global_deps) and the guard rewrote it.
    assert any("libtorch_global_deps" in name for _, name, _ in data["stripped"])
