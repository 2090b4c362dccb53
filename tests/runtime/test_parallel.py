"""Pure-Python work in parallel: each namespaced interpreter has a GIL of its own."""
from __future__ import annotations

import mmap
import time

FLAG_CODE = """
import mmap, sys, time
def wait_for_flag(path, limit):
    # Hold this interpreter's GIL for good: no switch for 1000 s, and nothing in the loop
    # releases it (mmap indexing and time.monotonic do not).
    sys.setswitchinterval(1000)
    with open(path, "r+b") as fh:
        shared = mmap.mmap(fh.fileno(), 2)
        shared[1] = 1                      # tell the host we are spinning
        deadline = time.monotonic() + limit
        while shared[0] == 0:
            if time.monotonic() > deadline:
                return "gave up"
        return "saw flag"
def raise_flag(path):
    with open(path, "r+b") as fh:
        mmap.mmap(fh.fileno(), 2)[0] = 1
    return "raised"
"""


def test_interpreter_runs_while_another_holds_its_gil(runtime2, tmp_path):
    # Were the GIL shared, interpreter 1 could not run until interpreter 0 gave up after
    # 30 s; with a GIL each it raises the flag while interpreter 0 spins.
    path = tmp_path / "flag"
    path.write_bytes(b"\0\0")
    runtime2.run_all(FLAG_CODE)
    waiter = runtime2._executor(broadcast=True).submit(
        runtime2.call, 0, "__main__:wait_for_flag", str(path), 30.0)
    with open(path, "r+b") as fh:
        shared = mmap.mmap(fh.fileno(), 2)
        deadline = time.monotonic() + 60
        while shared[1] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert shared[1] == 1, "interpreter 0 never started spinning"
    assert runtime2.call(1, "__main__:raise_flag", str(path)) == "raised"
    assert waiter.result(timeout=60) == "saw flag"


def test_same_pure_python_work_in_both_interpreters_gives_same_results(runtime2):
    runtime2.run_all("def work(n):\n    return sum(i * i % 7 for i in range(n))\n")
    expected = sum(i * i % 7 for i in range(200_000))
    assert runtime2.call_all("__main__:work", 200_000) == [expected, expected]
    assert runtime2.map("__main__:work", [1000, 2000, 3000, 4000]) == [
        sum(i * i % 7 for i in range(n)) for n in (1000, 2000, 3000, 4000)]
