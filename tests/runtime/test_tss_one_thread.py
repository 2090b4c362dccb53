"""docs/facts.md fact 4: TSS keys collide across namespaces; one OS thread per interpreter."""
from __future__ import annotations

import threading

from tests.runtime.runtime_helpers import run_isolated


def test_one_thread_entering_two_interpreters_deadlocks(rawns, rawns_env, libpython):
    result = run_isolated([str(rawns), str(libpython), "tss", "0"], env=rawns_env, timeout=15)
    assert result.timed_out, (result.returncode, result.stderr[-500:])


def test_one_thread_per_interpreter_works(rawns, rawns_env, libpython):
    result = run_isolated([str(rawns), str(libpython), "tss", "1"], env=rawns_env, timeout=30)
    assert result.returncode == 0, result.stderr[-500:]


def test_namespaces_hand_out_the_same_tss_key_numbers(runtime2):
    # Each namespace's libc numbers its pthread keys from scratch, so equal numbers name the
    # same per-thread slot: the collision the runtime avoids by pinning threads.
    code = ("import ctypes\nlibc = ctypes.CDLL('libc.so.6')\nkey = ctypes.c_uint()\n"
            "assert libc.pthread_key_create(ctypes.byref(key), None) == 0\n"
            "probe_key = key.value\n")
    runtime2.run(0, code)
    runtime2.run(1, code)
    assert runtime2.eval(0, "probe_key") == runtime2.eval(1, "probe_key")


def test_each_interpreter_is_served_by_one_fixed_thread(runtime2):
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    lock = threading.Lock()

    def client(index: int) -> None:
        for _ in range(5):
            native_thread = runtime2.info(index)["native_thread"]
            with lock:
                seen[index].add(native_thread)

    clients = [threading.Thread(target=client, args=(k % 2,)) for k in range(6)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    assert len(seen[0]) == 1 and len(seen[1]) == 1
    assert seen[0] != seen[1]
    assert threading.get_native_id() not in seen[0] | seen[1]
