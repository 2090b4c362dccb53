"""Thread exit frees pthread-key blocks with the libc that created the thread (native/README.md).

The thread descriptor (struct pthread) is one per thread, shared by every namespace's libc; the
key table and malloc are per libc. A namespace's pthread_setspecific for key >= 32 callocs a
second-level block into the descriptor with the namespace's malloc; at exit the creating libc's
__nptl_deallocate_tsd frees it with its own free and runs its own key table's destructors. A
worker created by the base libc therefore aborts ("double free or corruption") or has the
base's destructors called on the namespace's values. The runtime creates each worker with its
namespace's pthread_create.
"""
from __future__ import annotations

from tests.runtime.runtime_helpers import run_isolated, run_python


def _rawns(rawns, rawns_env, libpython, flag: int):
    return run_isolated([str(rawns), str(libpython), "tsd", str(flag)], env=rawns_env, timeout=60)


def test_base_created_thread_frees_namespace_key_blocks_with_the_wrong_malloc(rawns, rawns_env,
                                                                              libpython):
    result = _rawns(rawns, rawns_env, libpython, 0)
    assert result.signal == "SIGABRT", (result.returncode, result.stderr[-500:])
    assert "double free or corruption" in result.stderr or "free()" in result.stderr


def test_base_created_thread_runs_the_bases_key_destructors_on_namespace_values(rawns, rawns_env,
                                                                                libpython):
    result = _rawns(rawns, rawns_env, libpython, 2)
    assert result.returncode == 5, (result.returncode, result.stderr[-500:])
    assert "base destructors ran on 8 namespace values" in result.stdout


def test_namespace_created_thread_exits_cleanly(rawns, rawns_env, libpython):
    result = _rawns(rawns, rawns_env, libpython, 1)
    assert result.returncode == 0, (result.returncode, result.stderr[-500:])
    assert "rawns: done" in result.stdout


KEYS_THEN_STOP = """
from interpkit.native import Runtime
rt = Runtime(2, timeout=120)
# 40 keys with values in interpreter 0: its libc callocs second-level blocks into the worker's
# descriptor; stop() ends that worker thread while interpreter 1 keeps serving.
rt.run(0, '''
import ctypes
libc = ctypes.CDLL("libc.so.6")   # this namespace's libc (dlopen(NULL) is the base program)
keys = (ctypes.c_uint * 40)()
for k in range(40):
    assert libc.pthread_key_create(ctypes.byref(keys, 4 * k), None) == 0
    assert libc.pthread_setspecific(keys[k], ctypes.c_void_p(k + 1)) == 0
''')
record = rt.stop(0)
print("stopped:", record.outcome, record.finalize_rc)
print("still serving:", rt.eval(1, "6 * 7"))
print("closed:", [r.outcome for r in rt.close()])
"""


def test_runtime_worker_with_namespace_keys_stops_and_closes_cleanly():
    result = run_python(KEYS_THEN_STOP, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-800:])
    assert "stopped: finalized 0" in result.stdout
    assert "still serving: 42" in result.stdout
    assert "closed: ['finalized', 'finalized']" in result.stdout
