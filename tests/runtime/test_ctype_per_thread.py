"""docs/facts.md fact 2: a thread entering a namespace needs that namespace's __ctype_init."""
from __future__ import annotations

from tests.runtime.runtime_helpers import run_isolated


def test_bare_host_thread_without_ctype_init_crashes(rawns, rawns_env, libpython):
    result = run_isolated([str(rawns), str(libpython), "ctype", "0"], env=rawns_env, timeout=60)
    assert result.signal == "SIGSEGV", (result.returncode, result.stderr[-500:])


def test_bare_host_thread_with_ctype_init_works(rawns, rawns_env, libpython):
    result = run_isolated([str(rawns), str(libpython), "ctype", "1"], env=rawns_env, timeout=60)
    assert result.returncode == 0, result.stderr[-500:]
    assert "rawns: done" in result.stdout


def test_runtime_worker_threads_tokenize_and_classify_characters(runtime2):
    # The same work as the bare host's crash, on the runtime's worker threads (created by
    # the base namespace's libc, like the crashing thread).
    source = "def f(a_b):\n    return [c for c in a_b if c.isalpha() and not c.isdigit()]\n"
    runtime2.run(0, source)
    runtime2.run(1, source)
    assert runtime2.call_all("__main__:f", "ab1c") == [["a", "b", "c"]] * 2
    assert runtime2.call_all("builtins:eval", "'x_1'.isidentifier()") == [True, True]
