"""The real stack in N interpreters: torchvision detectors (C++ ops nms, roi_align) and a
transformers model, built from random weights, served from 2 and 4 interpreters of one process
of the real-stack venv (the index's default CUDA torch build, running on CPU).

Two children: N=2 with torch in the host too (it computes the one-interpreter reference), and
N=4 with a host that never imports torch. Each stops interpreter 0 while the last keeps
serving, closes, and must exit 0.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.realstack, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from realstack_models import MODELS  # noqa: E402

CHILD_TIMEOUT_S = 1800   # four interpreters importing torch+transformers on 2 loaded cores


def _serve(python: str, n: int, host: bool) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error"}
    argv = [python, str(HERE / "realstack_child.py"), str(n), *(["host"] if host else [])]
    done = subprocess.run(argv, capture_output=True, text=True, errors="replace", env=env,
                          timeout=CHILD_TIMEOUT_S, stdin=subprocess.DEVNULL, cwd=str(HERE))
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if done.returncode == 0 and lines else {}
    return {"returncode": done.returncode, "stderr": done.stderr[-3000:], **result}


@pytest.fixture(scope="module")
def served(realstack_python):
    results = {2: _serve(realstack_python, 2, host=True), 4: _serve(realstack_python, 4, host=False)}
    for n, result in results.items():
        assert result["returncode"] == 0, f"N={n} child failed: rc {result['returncode']}\n{result['stderr']}"
    return results


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("model", MODELS)
def test_outputs_in_n_interpreters_equal_one_interpreter(served, model, n):
    reference = served[2]["reference"][model]
    assert all(len(values) > 0 for values in reference.values()), reference   # a real output
    assert served[n]["served"][model] == [reference] * n


@pytest.mark.parametrize("n", [2, 4])
def test_stopping_one_interpreter_leaves_the_others_serving(served, n):
    result = served[n]
    assert result["stopped"]["outcome"] == "finalized" and result["stopped"]["finalize_rc"] == 0
    assert result["live_after_stop"] == list(range(1, n))
    assert result["after_stop"] == served[2]["reference"]


@pytest.mark.parametrize("n", [2, 4])
def test_close_finalizes_every_interpreter_and_the_process_exits_zero(served, n):
    teardown = served[n]["teardown"]
    assert [record["index"] for record in teardown] == list(range(n))
    assert all(record["outcome"] == "finalized" and record["finalize_rc"] == 0 for record in teardown), teardown
    assert served[n]["returncode"] == 0


def test_thread_budget_reaches_torch_and_openmp(served):
    threads = served[4]["threads"]
    assert threads["budget"] == 1
    assert threads["environment"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                                      "OPENBLAS_NUM_THREADS": "1"}
    assert threads["torch.get_num_threads"] == 1
    assert threads["torch.get_num_interop_threads"] == 1
