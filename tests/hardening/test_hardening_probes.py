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
# Address-space limit for the probes: two namespaces of a plain Python fit in well under 1 GiB,
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
        # Out of address space, CPython raises MemoryError, or aborts (a fatal error while it has no
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
    from interpkit.native.probe import probe_module

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
    from interpkit.native.subinterp import probe_module

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


def test_out_of_memory_reads_the_live_peak(no_leftovers):
    """The rule behind the memory outcome: a live process whose address space reached 90 % of the
    limit is out of memory; below that, or once gone, it is not (bytearray's zero pages are
    reserved, not touched, so this costs no real memory)."""
    import subprocess

    from interpkit.native.outcome import out_of_memory

    child = subprocess.Popen([sys.executable, "-c", "import sys, time; x = bytearray(700 << 20); "
                              "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        reason = out_of_memory(child.pid, 600)
        assert reason is not None and "ran out of memory" in reason and "600 MiB limit" in reason
        assert out_of_memory(child.pid, 4096) is None
        assert out_of_memory(child.pid, None) is None
    finally:
        child.kill()
        child.wait()
    assert out_of_memory(child.pid, 600) is None
