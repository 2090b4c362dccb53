"""The Runtime API on real namespaced interpreters: requests, errors, introspection."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from interpkit.native import InterpreterClosed, InterpreterTimeout, RemoteError, Runtime
from tests.runtime.runtime_helpers import run_python


def test_run_and_eval_keep_state_per_interpreter(runtime2):
    runtime2.run(0, "counter = 41")
    runtime2.run(1, "counter = 7")
    assert runtime2.eval(0, "counter + 1") == 42
    assert runtime2.eval(1, "counter + 1") == 8


def test_call_passes_args_and_kwargs(runtime2):
    assert runtime2.call(1, "math:factorial", 6) == 720
    assert runtime2.call(0, "builtins:sorted", [3, 1, 2], reverse=True) == [3, 2, 1]
    assert runtime2.call(0, "os.path:join", "a", "b") == os.path.join("a", "b")


def test_interpreters_are_separate_python_runtimes_in_one_process(runtime2):
    infos = [runtime2.info(0), runtime2.info(1)]
    assert {info["pid"] for info in infos} == {os.getpid()}
    # Each namespace has its own copy of every global, sys included.
    assert infos[0]["sys_id"] != infos[1]["sys_id"]
    assert runtime2.call_all("os:getpid") == [os.getpid(), os.getpid()]


def test_remote_exception_carries_type_and_traceback(runtime2):
    runtime2.run(1, "def explode(x):\n    raise KeyError(f'no {x}')\n")
    with pytest.raises(RemoteError) as caught:
        runtime2.call(1, "__main__:explode", "cheese")
    error = caught.value
    assert error.interpreter == 1
    assert error.type_name == "KeyError"
    assert "cheese" in error.remote_message
    assert "in explode" in error.remote_traceback
    assert str(error).startswith("interpreter 1 raised KeyError")


def test_unknown_target_and_unpicklable_result_are_remote_errors(runtime2):
    with pytest.raises(RemoteError, match="ModuleNotFoundError"):
        runtime2.call(0, "no_such_module_xyz:f")
    with pytest.raises(RemoteError) as caught:
        runtime2.eval(0, "lambda: None")
    assert "pickle" in caught.value.type_name.lower() or "pickle" in str(caught.value).lower()


def test_call_all_map_and_submit(runtime2):
    assert runtime2.call_all("operator:add", 2, 3) == [5, 5]
    assert runtime2.map("math:isqrt", range(20)) == [int(i ** 0.5) for i in range(20)]
    assert runtime2.map("operator:mul", [(2, 3), (4, 5)], star=True) == [6, 20]
    futures = [runtime2.submit("operator:neg", i) for i in range(8)]
    assert [future.result() for future in futures] == [-i for i in range(8)]


def test_many_host_threads_feed_the_interpreters(runtime2):
    results: dict[int, int] = {}

    def client(k: int) -> None:
        results[k] = runtime2.call(k % 2, "operator:pow", k, 2)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {k: k * k for k in range(16)}


def test_add_sys_path_reaches_every_interpreter(runtime2, tmp_path):
    (tmp_path / "ik_added_module.py").write_text("VALUE = 'from tmp'\n")
    runtime2.add_sys_path(tmp_path)
    assert runtime2.call_all("builtins:getattr", __import__("types").SimpleNamespace(), "x",
                             None) == [None, None]
    assert runtime2.eval(0, "__import__('ik_added_module').VALUE") == "from tmp"
    assert runtime2.eval(1, "__import__('ik_added_module').VALUE") == "from tmp"


@pytest.mark.parametrize("source", [
    "while True:\n    pass\n",                               # never releases the GIL
    "import time\nwhile True:\n    time.sleep(0.01)\n",     # releases it all the time
], ids=["busy-loop", "sleep-loop"])
def test_timeout_interrupts_python_code_and_interpreter_survives(runtime2, source):
    with pytest.raises(InterpreterTimeout, match="interrupted"):
        runtime2.run(0, source, timeout=0.5)
    assert runtime2.alive(0)
    assert runtime2.eval(0, "1 + 1") == 2


def test_request_blocked_in_c_marks_interpreter_lost_and_exit_does_not_hang():
    # PyDLL keeps the GIL across the call: no pending call can run until sleep returns.
    code = """
from interpkit.native import Runtime, InterpreterClosed, InterpreterTimeout
runtime = Runtime(2)
try:
    runtime.run(0, "import ctypes\\nctypes.PyDLL('libc.so.6').sleep(1000)", timeout=0.3)
except InterpreterTimeout as exc:
    print("timeout:", exc)
assert not runtime.alive(0)
assert runtime.eval(1, "6 * 7") == 42
try:
    runtime.close()
except InterpreterClosed as exc:
    print("closed:", exc)
"""
    result = run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "marked lost" in result.stdout
    assert "cannot close 1 interpreter" in result.stdout


def test_namespace_libs_lists_each_interpreters_own_objects(runtime2, libpython):
    ids = [runtime2.namespace_id(0), runtime2.namespace_id(1)]
    assert 0 not in ids and ids[0] != ids[1]
    libs = [runtime2.namespace_libs(i) for i in range(2)]
    for index, objects in enumerate(libs):
        paths = [Path(obj.path).name for obj in objects]
        assert libpython.name in paths
        assert "libc.so.6" in paths
        assert all(obj.namespace == ids[index] for obj in objects)
    bases = [{obj.base for obj in objects if Path(obj.path).name == libpython.name}
             for objects in libs]
    assert bases[0].isdisjoint(bases[1])
    # An extension imported in one interpreter shows up in that namespace only.
    runtime2.run(0, "import _decimal")
    names = [[Path(obj.path).name for obj in runtime2.namespace_libs(i)] for i in range(2)]
    assert any(name.startswith("_decimal") for name in names[0])
    assert not any(name.startswith("_decimal") for name in names[1])


def test_stop_one_interpreter_while_the_other_lives():
    with Runtime(2) as runtime:
        runtime.run(0, "import json")
        runtime.stop(0)
        assert not runtime.alive(0)
        # It finalized cleanly, so its namespace was unloaded; the other one is still loaded.
        assert runtime.namespace_id(0) == -1
        assert runtime.namespace_id(1) > 0
        with pytest.raises(InterpreterClosed):
            runtime.eval(0, "1")
        assert runtime.eval(1, "__import__('json').dumps([1])") == "[1]"
        assert runtime.call_all("operator:add", 1, 1) == [2]
        assert runtime.map("operator:neg", range(6)) == [0, -1, -2, -3, -4, -5]
    with pytest.raises(InterpreterClosed):
        runtime.eval(1, "1")


def test_bad_arguments_are_rejected_before_any_dlmopen(runtime2, tmp_path):
    with pytest.raises(ValueError):
        Runtime(0)
    with pytest.raises(IndexError):
        runtime2.eval(2, "1")
    from interpkit.native import RuntimeStartError

    with pytest.raises(RuntimeStartError, match="does not exist"):
        Runtime(1, libpython=tmp_path / "libpython3.11.so")
