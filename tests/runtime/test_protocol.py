"""One suite for every in-process runtime: the same calls give the same answers and the same
teardown records (interpkit.native.protocol). A further runtime is one more parameter.

Each runtime runs in a child process: the namespaces one spends glibc namespaces, a budget of the
whole process, and a crash must never take pytest down.
"""
from __future__ import annotations

import json

import pytest

from tests.runtime.runtime_helpers import run_python

RUNTIMES = ["interpkit.native:Runtime", "interpkit.native:CopiesRuntime"]

SCENARIO = """
import json, os
from importlib import import_module
from interpkit.native.errors import InterpreterClosed, InterpreterTimeout, RemoteError
from interpkit.native.protocol import InProcessRuntime

module, _, name = {runtime!r}.partition(":")
Runtime = getattr(import_module(module), name)
out = {{}}
rt = Runtime(3, timeout=120)
out["protocol"] = isinstance(rt, InProcessRuntime)
rt.run(0, "x = 41")
out["eval"] = rt.eval(0, "x + 1")
out["call"] = rt.call(1, "math:factorial", 5)
out["pids"] = sorted(set(rt.call_all("os:getpid")) | {{os.getpid()}})
out["map"] = rt.map("math:sqrt", [1, 4, 9])
out["submit"] = rt.submit("math:factorial", 4).result()
try:
    rt.call(0, "math:sqrt", -1)
except RemoteError as exc:
    out["remote"] = [exc.type_name, exc.remote_message]
try:
    rt.run(2, "while True:\\n    pass", timeout=2)
except InterpreterTimeout:
    out["timed_out"] = True
out["after_timeout"] = rt.eval(2, "6 * 7")
first = rt.stop(0)
out["stop"] = first.as_dict()
out["stop_again"] = rt.stop(0) == first == rt.teardown[0]
out["live"] = rt.live_indices()
try:
    rt.call(0, "math:sqrt", 4.0)
except InterpreterClosed:
    out["closed_after_stop"] = True
out["retire"] = rt.stop(1, finalize=False).as_dict()
rt.run(2, "import threading, time\\nthreading.Thread(target=time.sleep, args=(3600,), name='sleeper').start()")
closed = rt.close()
out["close"] = [record.as_dict() for record in closed]
out["close_is_teardown"] = closed == rt.teardown
out["close_again"] = rt.close() == closed
with Runtime(1, timeout=120, teardown="retire") as parked:
    parked.eval(0, "1")
out["policy"] = [record.as_dict() for record in parked.teardown]
print(json.dumps(out), flush=True)
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_same_calls_give_the_same_answers_and_teardown_records(runtime):
    result = run_python(SCENARIO.format(runtime=runtime), timeout=600)
    assert result.returncode == 0, (result.returncode, result.stderr[-1500:])
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["protocol"] is True
    assert (out["eval"], out["call"], out["map"], out["submit"]) == (42, 120, [1.0, 2.0, 3.0], 24)
    assert len(out["pids"]) == 1                                  # every interpreter in this process
    assert out["remote"] == ["ValueError", "math domain error"]
    assert out.get("timed_out") is True and out["after_timeout"] == 42
    stop = out["stop"]
    assert (stop["index"], stop["outcome"], stop["reason"], stop["finalize_rc"]) == (0, "finalized", "", 0)
    assert out["stop_again"] is True
    assert out["live"] == [1, 2] and out.get("closed_after_stop") is True
    assert out["retire"] == {"index": 1, "outcome": "retired", "reason": "retired on request (finalize=False)",
                             "finalize_rc": None, "seconds": 0.0}
    records = {record["index"]: record for record in out["close"]}
    assert sorted(records) == [0, 1, 2]
    assert records[0] == stop and records[1] == out["retire"]
    # Py_FinalizeEx would wait for the non-daemon thread forever: retired instead, and said why.
    assert records[2]["outcome"] == "retired"
    assert "1 non-daemon thread(s) still running (sleeper)" in records[2]["reason"]
    assert out["close_is_teardown"] is True and out["close_again"] is True
    assert out["policy"] == [{"index": 0, "outcome": "retired", "reason": "retired on request (teardown='retire')",
                              "finalize_rc": None, "seconds": 0.0}]
