"""docs/facts.md fact 7: never end an interpreter's thread holding its GIL; close joins cleanly."""
from __future__ import annotations

import os
import sys
import threading

import pytest

from interpkit.native import Runtime
from tests.runtime.runtime_helpers import REPO_ROOT, requires_torch, run_isolated, run_python
from tests.runtime.teardown_checks import check_clean_teardown

IMPORT_TORCH = (f"import sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n"
                "import interpkit.native.guest.guard\ninterpkit.native.guest.guard.install()\nimport torch\n")


def _tasks() -> set[int]:
    return {int(tid) for tid in os.listdir("/proc/self/task")}


def test_close_joins_every_worker_thread():
    before_threads = threading.active_count()
    with Runtime(2) as runtime:
        workers = {runtime.info(i)["native_thread"] for i in range(2)}
        assert workers <= _tasks()
    assert not workers & _tasks()
    assert threading.active_count() == before_threads


@pytest.mark.slow
@pytest.mark.torch
@requires_torch
def test_bare_host_thread_ending_with_the_gil_hangs_exit_after_torch(rawns, rawns_env,
                                                                      libpython):
    env = {**rawns_env, "RAWNS_SOURCE": IMPORT_TORCH}
    held = run_isolated([str(rawns), str(libpython), "teardown", "0"], env=env, timeout=40)
    assert held.timed_out and "rawns: done" in held.stdout, (held.returncode, held.stderr[-500:])
    released = run_isolated([str(rawns), str(libpython), "teardown", "1"], env=env, timeout=120)
    assert released.returncode == 0, released.stderr[-500:]


CLOSED = """
import os
from interpkit.native import Runtime
runtime = Runtime(2, timeout=300)
runtime.run_all("import torch\\nx = torch.ones(64, 64)\\ny = (x @ x).sum().item()")
workers = {runtime.info(i)["native_thread"] for i in range(2)}
runtime.close()
left = workers & {int(t) for t in os.listdir("/proc/self/task")}
print("left:", sorted(left))
"""

FORGOTTEN = """
from interpkit.native import Runtime
runtime = Runtime(2, timeout=300)
runtime.run_all("import torch\\nx = torch.ones(8)")
print("exiting without close")
"""


@pytest.mark.torch
@requires_torch
@pytest.mark.parametrize("code", [CLOSED, FORGOTTEN], ids=["closed", "never-closed"])
def test_runtime_with_torch_exits_without_hang(code):
    result = run_python(code, timeout=180)
    assert result.returncode == 0, (result.returncode, result.stderr[-1000:])
    if code is CLOSED:
        assert "left: []" in result.stdout


FORK = """
import os
from interpkit.native import InterpreterClosed, Runtime
runtime = Runtime(2)
assert runtime.call_all("operator:add", 1, 1) == [2, 2]
pid = os.fork()
if pid == 0:
    try:
        runtime.eval(0, "1")
    except InterpreterClosed as exc:
        print("child:", exc, flush=True)
    runtime.close()                     # must not wait for the parent's threads
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
assert runtime.eval(1, "6 * 7") == 42   # the parent's runtime is untouched
runtime.close()
print("parent: ok")
"""


def test_forked_child_neither_uses_nor_waits_for_the_parents_interpreters():
    result = run_python(FORK, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr[-800:])
    assert "child: cannot use runtime (forked: it belongs to the parent process)" in result.stdout
    assert "parent: ok" in result.stdout


# Stop one while the last serves, close, exit: CPU build, torch in the host or not, after import
# or inference (the CUDA build's rows are in tests/realstack/test_teardown_cuda_build.py).
@pytest.mark.slow
@pytest.mark.torch
@requires_torch
@pytest.mark.parametrize(("n", "host", "phase"), [(1, "bare", "infer"), (2, "host", "infer"),
                                                  (4, "host", "import")])
def test_torch_teardown_is_clean_cpu_build(n, host, phase):
    check_clean_teardown(sys.executable, n, host, phase)
