"""Hostile extensions under every probe: segfault, abort, _exit, endless loop, unbounded allocation.

Fixtures: fixtures/ext/hostile_*/ (the action happens in PyInit_, so every backend reaches it).
Each probe must report the outcome it saw and leave no process behind. Leftovers are found by
an environment tag: every process a probe starts inherits this test's environment, so after the
probe returns no process but this one may still carry the tag (a process reparented to init
after its parent died would otherwise go unnoticed by a parent/child walk).
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.hardening.hardening_hostile import assert_no_traceback, run_cli  # noqa: E402

pytestmark = pytest.mark.slow  # each probe starts interpreters; the hang cases wait out their timeout

TAG_VARIABLE = "INTERPKIT_HARDENING_PROBE_TAG"
PROBE_TIMEOUT_S = 6.0
# The allocating fixture needs time to reach the limit on a loaded machine; it rarely uses it all.
ALLOC_TIMEOUT_S = 30.0
# Resident-memory limit for the probes: two namespaces of a plain Python fit in well under 1 GiB,
# and the allocating fixture must be stopped long before it troubles a shared machine.
MEMORY_LIMIT_MB = 1536
SUBINTERPRETER_PYTHON = "3.13"

EXPECTED = {
    # fixture: (accepted statuses, signal or None, text the message must hold)
    "hostile_segv": ({"crash"}, "SIGSEGV", "import"),
    "hostile_abort": ({"crash"}, "SIGABRT", "import"),
    "hostile_exit": ({"error", "crash"}, None, "3"),
    "hostile_loop": ({"hang"}, None, "import"),
    "hostile_alloc": ({"crash", "import_error"}, None, "memory"),
}


def tagged_processes(tag: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process other than this one whose environment holds tag."""
    marker = f"{TAG_VARIABLE}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if marker in environ.split(b"\0"):
            found.append((int(entry), cmdline))
    return found


@pytest.fixture
def no_leftovers(monkeypatch):
    """Tag everything started during the test; afterwards nothing tagged may remain (after a grace
    period for SIGKILLed processes to be reaped)."""
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG_VARIABLE, tag)
    yield tag
    deadline = time.monotonic() + 10
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind by the probe: {left}"


def check_outcome(name: str, status: str, signal: str | None, message: str) -> None:
    statuses, expected_signal, fragment = EXPECTED[name]
    assert status in statuses, (name, status, message)
    if expected_signal is not None:
        assert signal == expected_signal, (name, signal, message)
    if name == "hostile_alloc":
        # Past the resident limit the sandbox kills it (SIGKILL, "ran out of memory"); a machine short
        # of memory first may make CPython raise MemoryError, or abort (a fatal error while it has no
        # memory to report one), or wedges and is killed at the timeout as out of memory.
        if status == "import_error":
            assert "MemoryError" in message
        elif signal == "SIGKILL":
            assert "ran out of memory" in message
        else:
            assert signal in ("SIGABRT", "SIGSEGV"), (signal, message)
    else:
        assert fragment in message, (name, message)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_namespaces_probe(built_fixtures, no_leftovers, name):
    from interpkit.native.sandbox.probe import probe_module

    extension = built_fixtures(name)
    started = time.monotonic()
    timeout = ALLOC_TIMEOUT_S if name == "hostile_alloc" else PROBE_TIMEOUT_S
    outcome = probe_module(name, extension.parent, interpreters=2, timeout=timeout,
                           memory_limit_mb=MEMORY_LIMIT_MB)
    check_outcome(name, outcome.status, outcome.signal, outcome.message)
    assert time.monotonic() - started < timeout + 30  # the timeout is enforced, not waited out twice
    assert outcome.steps and outcome.steps[-1]["step"] == "import"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_subinterpreters_probe(built_fixtures, python_for, no_leftovers, name):
    from interpkit.native.subinterpreters.runtime import probe_module

    python = python_for(SUBINTERPRETER_PYTHON)
    extension = built_fixtures(name, python)
    timeout = ALLOC_TIMEOUT_S if name == "hostile_alloc" else PROBE_TIMEOUT_S
    outcome = probe_module(name, extension.parent, interpreters=2, timeout=timeout,
                           python=SUBINTERPRETER_PYTHON, memory_limit_mb=MEMORY_LIMIT_MB)
    check_outcome(name, outcome.status, outcome.signal, outcome.message)


def test_verify_cli_reports_each_outcome(built_fixtures, no_leftovers):
    """`interpkit verify` over four hostile extensions at once: one row each, the run survives.
    (The allocating one is left to the tests above, which can lower the memory limit.)"""
    names = ["hostile_abort", "hostile_exit", "hostile_loop", "hostile_segv"]
    paths = [built_fixtures(name) for name in names]
    proc = run_cli("verify", "--format", "json", "--timeout", str(PROBE_TIMEOUT_S), *paths)
    assert_no_traceback(proc)
    report = json.loads(proc.stdout)
    rows = {row["module"]: row for row in report["results"]}
    assert sorted(rows) == names
    for name in names:
        row = rows[name]
        check_outcome(name, row["status"], row["outcome"].get("signal"), row["message"])


@pytest.mark.parametrize("name", ["hostile_segv", "hostile_loop", "hostile_alloc"])
def test_memory_measurement(built_fixtures, no_leftovers, name):
    """`interpkit memory`: the measuring child dies or is stopped, and the row says why."""
    proc = run_cli("memory", built_fixtures(name), "--backend", "namespaces", "-n", "1", "--format", "json",
                   "--timeout", str(PROBE_TIMEOUT_S), "--memory-limit", "512")
    assert_no_traceback(proc)
    report = json.loads(proc.stdout)
    [sample] = report["samples"]
    expected = {"hostile_segv": "killed by SIGSEGV", "hostile_loop": "timed out",
                "hostile_alloc": "memory limit 512 MiB"}[name]
    assert expected in sample["error"], sample


# --------------------------------------------------------------------------- each step, not only import

# fixture: (status, signal, text the message must hold) when its action runs after import.
AFTER_IMPORT = {
    "hostile_segv": ("crash", "SIGSEGV", "killed by SIGSEGV"),
    "hostile_abort": ("crash", "SIGABRT", "killed by SIGABRT"),
    "hostile_exit": ("error", None, "exited 3"),
    "hostile_loop": ("hang", None, "hung for"),
    "hostile_alloc": ("crash", "SIGKILL", f"ran out of memory (memory limit {MEMORY_LIMIT_MB} MiB"),
}
# Where the action lands: dir() in the smoke step, m_free when interpreter 0 is destroyed.
PINNED_ON = {"use": ("smoke", 0), "teardown": ("destroy", 0)}


def check_late_outcome(name: str, step: str, outcome) -> None:
    """One outcome, pinned on the step the action ran in, with every step before it kept."""
    status, signal, fragment = AFTER_IMPORT[name]
    assert outcome.status == status, (name, step, outcome)
    assert outcome.signal == signal, (name, step, outcome)
    assert fragment in outcome.message, (name, step, outcome.message)
    label, interpreter = PINNED_ON[step]
    last = outcome.steps[-1]
    assert (last["step"], last.get("interpreter")) == (label, interpreter), outcome.steps
    assert last["ok"] is False and fragment in last["error"]
    completed = outcome.steps[:-1]
    assert [s["step"] for s in completed].count("import") == 2, completed
    assert all(s["ok"] for s in completed), completed
    if step == "teardown":
        # Import and use were fine; teardown is the observed failure, named as such.
        assert outcome.use_status == "ok"
        assert outcome.teardown["status"] == status and outcome.teardown["step"] == "destroy"
        assert [s["step"] for s in completed].count("smoke") == 2
    else:
        assert outcome.teardown is None and outcome.use_status == status


@pytest.mark.parametrize("step", sorted(PINNED_ON))
@pytest.mark.parametrize("name", sorted(AFTER_IMPORT))
def test_namespaces_probe_after_import(built_fixtures, no_leftovers, monkeypatch, name, step):
    from interpkit.native.sandbox.probe import probe_module

    monkeypatch.setenv("INTERPKIT_HOSTILE_STEP", step)
    extension = built_fixtures(name)
    timeout = ALLOC_TIMEOUT_S if name == "hostile_alloc" else PROBE_TIMEOUT_S
    outcome = probe_module(name, extension.parent, interpreters=2, timeout=timeout,
                           memory_limit_mb=MEMORY_LIMIT_MB)
    check_late_outcome(name, step, outcome)


@pytest.mark.parametrize("step", sorted(PINNED_ON))
@pytest.mark.parametrize("name", sorted(AFTER_IMPORT))
def test_subinterpreters_probe_after_import(built_fixtures, python_for, no_leftovers, monkeypatch, name, step):
    """Legacy subinterpreters: the hostile fixtures declare no multi-interpreter support, so
    isolated ones refuse them at import and never reach use or teardown."""
    from interpkit.native.subinterpreters.runtime import probe_module

    monkeypatch.setenv("INTERPKIT_HOSTILE_STEP", step)
    python = python_for(SUBINTERPRETER_PYTHON)
    extension = built_fixtures(name, python)
    timeout = ALLOC_TIMEOUT_S if name == "hostile_alloc" else PROBE_TIMEOUT_S
    outcome = probe_module(name, extension.parent, interpreters=2, timeout=timeout, config="legacy",
                           python=SUBINTERPRETER_PYTHON, memory_limit_mb=MEMORY_LIMIT_MB)
    check_late_outcome(name, step, outcome)


def test_verify_keeps_its_report_when_teardown_crashes(built_fixtures, no_leftovers, monkeypatch):
    """Import and use agree with the prediction; the crash at teardown is its own observed
    outcome: exit 1 with the reason, and the whole report is still written."""
    monkeypatch.setenv("INTERPKIT_HOSTILE_STEP", "teardown")
    proc = run_cli("verify", "--format", "json", "--timeout", str(PROBE_TIMEOUT_S), built_fixtures("hostile_abort"))
    assert_no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    [row] = report["results"]
    assert row["status"] == "ok" and row["observed"] == "ok", row
    assert row["teardown"]["status"] == "crash" and row["teardown"]["signal"] == "SIGABRT", row
    assert "during destroy in interpreter 0" in row["teardown"]["message"]
    assert report["summary"]["teardown_failures"] == ["hostile_abort"]
    assert report["summary"]["crashes_predicted_safe"] == []


def test_memory_keeps_its_numbers_when_teardown_crashes(built_fixtures, no_leftovers, monkeypatch):
    """The sample is streamed before the runtime closes: a crash while closing keeps the row's
    numbers, and the run reports the teardown failure (exit 1)."""
    monkeypatch.setenv("INTERPKIT_HOSTILE_STEP", "teardown")
    proc = run_cli("memory", built_fixtures("hostile_segv"), "--backend", "namespaces", "-n", "1", "--format", "json",
                   "--timeout", "120")
    assert_no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    [row] = report["rows"]
    assert row["error"] is None and row["total_pss_bytes"] > 0, row
    [sample] = report["samples"]
    assert sample["teardown"]["status"] == "crash" and sample["teardown"]["signal"] == "SIGSEGV", sample["teardown"]
    assert sample["teardown"]["step"] == "close"


def test_first_real_error_is_kept_over_the_abort_that_follows(tmp_path, no_leftovers):
    """The import fails with an ImportError, then the process aborts while finalising: the
    outcome is the ImportError, and the abort is kept as what happened at exit."""
    from interpkit.native.sandbox.probe import probe_module

    (tmp_path / "ik_fails_then_aborts.py").write_text(
        "import atexit, os\natexit.register(os.abort)\nraise ImportError('libfoo.so: failed to map segment')\n")
    outcome = probe_module("ik_fails_then_aborts", tmp_path, interpreters=2, timeout=60)
    assert outcome.status == "import_error", outcome
    assert outcome.message == "ImportError: libfoo.so: failed to map segment"
    exit_step = outcome.steps[-1]
    assert exit_step["step"] == "exit" and exit_step["status"] == "crash" and exit_step["signal"] == "SIGABRT"


# --------------------------------------------------------------------------- the memory limit

RESERVE_BYTES = 40 << 30   # more address space than this machine has memory
_RESERVE = f"""
import json, mmap, sys, time
# prot=0 is PROT_NONE (the mmap module does not name it): address space only, as a CUDA
# build's allocator reserves it; nothing is resident.
block = mmap.mmap(-1, {RESERVE_BYTES}, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)
vm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:"))
print(json.dumps({{"event": "reserved", "vm_size_kb": vm_kb}}), flush=True)
time.sleep(2)   # several of the parent's polls
print(json.dumps({{"event": "done"}}), flush=True)
"""
_TOUCH = """
import json, time
blocks = []
while True:
    blocks.append(bytearray(32 << 20))   # zero-filled: every page touched
    print(json.dumps({"event": "grown", "mib": 32 * len(blocks)}), flush=True)
    time.sleep(0.02)
"""


def test_memory_limit_allows_a_large_reservation(no_leftovers):
    from interpkit.native import sandbox

    run = sandbox.run([sys.executable, "-c", _RESERVE], limits=sandbox.Limits(timeout_s=60, memory_limit_mb=256))
    assert run.ending.clean, run.ending
    [reserved] = run.of("reserved")
    assert reserved["vm_size_kb"] * 1024 > RESERVE_BYTES
    assert run.of("done")


def test_memory_limit_kills_resident_growth_and_keeps_what_was_streamed(no_leftovers):
    from interpkit.native import sandbox

    run = sandbox.run([sys.executable, "-c", _TOUCH], limits=sandbox.Limits(timeout_s=120, memory_limit_mb=256))
    ending = run.ending
    assert ending.status == "crash" and ending.signal == "SIGKILL", ending
    assert ending.memory.startswith("memory limit 256 MiB: ")
    grown = run.of("grown")
    assert grown and grown[-1]["mib"] >= 200   # everything streamed before the kill is kept


def test_probe_of_a_module_that_reserves_more_than_the_limit(tmp_path, no_leftovers):
    """Tens of GiB reserved per interpreter, a 1.5 GiB resident limit: the probe passes."""
    from interpkit.native.sandbox.probe import probe_module

    (tmp_path / "ik_reserves.py").write_text(
        f"import mmap\nBLOCK = mmap.mmap(-1, {RESERVE_BYTES}, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, "
        "prot=0)\n")  # PROT_NONE
    outcome = probe_module("ik_reserves", tmp_path, interpreters=2, timeout=120, memory_limit_mb=MEMORY_LIMIT_MB)
    assert outcome.status == "ok", outcome


def test_sandbox_ends_what_the_child_left_running(no_leftovers):
    """A child that exits leaving a grandchild behind, holding the record pipe open: reading
    the records still ends (without the kill it would wait for the grandchild), the record is
    kept, and the grandchild is killed with the group."""
    from interpkit.native import sandbox

    leaver = ("import json, subprocess, sys\n"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
              "print(json.dumps({'event': 'left', 'pid': p.pid}), flush=True)\n")
    with sandbox.Child([sys.executable, "-c", leaver], limits=sandbox.Limits(timeout_s=120)) as child:
        records = list(child)     # to the end of the stream, as `interpkit run` reads progress
        ending = child.wait()
    assert ending.clean, ending
    [left] = [record for record in records if record["event"] == "left"]
    deadline = time.monotonic() + 10
    while Path(f"/proc/{left['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)   # SIGKILLed; reaped by init once it is gone
    status = Path(f"/proc/{left['pid']}/stat")
    assert not status.exists() or status.read_text().rpartition(")")[2].split()[0] == "Z"
