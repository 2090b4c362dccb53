"""Retire: an interpreter that cannot be finalized safely is parked, reported, and never kills the process."""
from __future__ import annotations

import json

import pytest

from interpkit.native import Runtime
from tests.runtime.runtime_helpers import run_python

RETIRE = """
import json, os
from interpkit.native import Runtime
rt = Runtime(3, timeout=60)
out = {}
out["asked"] = rt.stop(0, finalize=False).as_dict()
out["serving"] = rt.eval(2, "6 * 7")
# A non-daemon thread: Py_FinalizeEx would join it forever, so close retires interpreter 1.
rt.run(1, "import threading, time\\nthreading.Thread(target=time.sleep, args=(3600,), name='sleeper').start()")
workers = {i: rt.info(i)["native_thread"] for i in (1, 2)}
out["closed"] = [record.as_dict() for record in rt.close()]
tasks = {int(t) for t in os.listdir("/proc/self/task")}
out["parked"] = workers[1] in tasks
out["joined"] = workers[2] not in tasks
print(json.dumps(out), flush=True)
"""


def test_retired_interpreters_are_reported_and_the_process_exits_zero():
    result = run_python(RETIRE, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-1500:])
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["asked"] == {"index": 0, "outcome": "retired", "reason": "retired on request (finalize=False)",
                            "finalize_rc": None, "seconds": 0.0}
    assert out["serving"] == 42
    records = {record["index"]: record for record in out["closed"]}
    assert sorted(records) == [0, 1, 2]
    assert records[1]["outcome"] == "retired"
    assert "1 non-daemon thread(s) still running (sleeper)" in records[1]["reason"]
    assert records[2]["outcome"] == "finalized" and records[2]["finalize_rc"] == 0
    assert out["parked"] and out["joined"]   # the retired worker parks; the finalized one is joined


POLICY = """
import json
from interpkit.native import Runtime
with Runtime(2, teardown="retire") as rt:
    rt.run_all("x = 1")
print(json.dumps([record.as_dict() for record in rt.teardown]))
"""


def test_retire_policy_retires_every_interpreter_at_close():
    result = run_python(POLICY, timeout=60)
    assert result.returncode == 0, result.stderr[-1500:]
    records = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(r["index"], r["outcome"], r["reason"]) for r in records] == [
        (0, "retired", "retired on request (teardown='retire')"),
        (1, "retired", "retired on request (teardown='retire')")]


def test_unknown_teardown_policy_is_one_clear_error():
    with pytest.raises(ValueError, match="teardown must be one of finalize, retire"):
        Runtime(1, teardown="kill")
