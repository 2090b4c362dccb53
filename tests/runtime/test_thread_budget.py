"""Per-interpreter thread budget: each interpreter's pools get cores // N threads (or as asked)."""
from __future__ import annotations

import json
import os

import pytest

from interpkit.native import Runtime
from tests.runtime.runtime_helpers import requires_torch, run_python

BUDGET = """
import ctypes, json, os
from interpkit.native import Runtime
before = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
rt = Runtime(2, threads_per_interpreter=%(threads)s)
out = {"budget": rt.threads_per_interpreter,
       "threads": [rt.info(i)["threads"] for i in range(2)]}
%(torch)s
# The host's own environment, as Python and as its libc's getenv see it, is untouched.
getenv = ctypes.CDLL(None).getenv
getenv.restype = ctypes.c_char_p
out["host_unchanged"] = before == {name: os.environ.get(name) for name in before} and all(
    (getenv(name.encode()) or b"").decode() == (before[name] or "") for name in before)
rt.close()
print(json.dumps(out))
"""
TORCH = """
rt.run_all("import torch")
out["torch"] = [rt.info(i)["threads"] for i in range(2)]
"""


def _run(threads: str, torch: bool = False) -> dict:
    result = run_python(BUDGET % {"threads": threads, "torch": TORCH if torch else ""}, timeout=300)
    assert result.returncode == 0, result.stderr[-1500:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_default_budget_is_cores_divided_by_interpreters():
    out = _run("None")
    expected = max(1, len(os.sched_getaffinity(0)) // 2)
    assert out["budget"] == expected
    for threads in out["threads"]:
        assert threads["environment"] == {"OMP_NUM_THREADS": str(expected), "MKL_NUM_THREADS": str(expected),
                                          "OPENBLAS_NUM_THREADS": str(expected)}
    assert out["host_unchanged"]


def test_budget_off_leaves_each_interpreter_the_hosts_environment():
    out = _run("0")
    assert out["budget"] == 0
    host = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    assert [threads["environment"] for threads in out["threads"]] == [host, host]


@pytest.mark.torch
@requires_torch
def test_budget_sizes_torch_intra_and_inter_op_pools_after_import():
    out = _run("3", torch=True)
    for threads in out["torch"]:
        assert threads["torch.get_num_threads"] == 3
        assert threads["torch.get_num_interop_threads"] == 3
        assert threads["applied"] == {"torch.set_num_threads": 3, "torch.set_num_interop_threads": 3}
    assert out["host_unchanged"]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_budget_is_one_clear_error(bad):
    with pytest.raises(ValueError, match="threads_per_interpreter must be an integer >= 0 or None"):
        Runtime(1, threads_per_interpreter=bad)
