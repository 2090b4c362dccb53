"""The one child-process harness: job in, JSON-line records out, bounded, killed with its children.

Every command that runs a runtime (verify, memory, the copies probe, run) starts it here, never
in its own process. The contract, both sides:

* **Job in.** ``Child(command, job)`` writes ``job`` as one JSON line on the child's stdin
  (``keep_stdin_open=True`` leaves stdin open for more lines, e.g. requests to a server).
* **Records out, streamed.** The child writes one JSON object per line on the descriptor that
  was its stdout at start (``Channel`` below points fd 1 at stderr first, so a module that
  prints cannot corrupt the stream). Each completed step is written as it completes, so when
  the child later dies (a crash at teardown, a hang, the memory limit) every record written
  before stays with the parent: nothing measured is lost.
* **Limits.** A timeout (``timeout_s``; with ``progress_events`` it restarts whenever such a
  record arrives, i.e. it bounds each unit of work) and a *resident*-memory limit: the parent
  sums the Pss of the child's process group (and its descendants) every ``poll_s`` and kills
  it past ``memory_limit_mb``. Not an address-space cap (RLIMIT_AS): a CUDA build of torch
  reserves tens of GiB of address space it never touches and fails to map its own libraries
  under such a cap ("failed to map segment from shared object"). Pss, not Rss: namespaces map
  the same library file once per interpreter, and Rss counts such a page once per mapping.
  A cgroup would bound memory without polling, but needs a delegated cgroup tree, which
  containers and CI runners rarely give; polling works everywhere.
* **Own process group.** The child starts a new session; a timeout, the memory limit or the
  end of the run kills the group and every descendant, so nothing is left behind.
* **How it ended** (``Ending``): exit status or signal, whether the timeout or the memory
  limit killed it, and the tail of its stderr (where ``faulthandler`` and glibc write the
  cause of a crash).

The child's side (``Channel``, ``read_job``, ``Steps``: the one step reporter) is guest code,
``interpkit.native.guest.channel``; this module is the parent's side.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from interpkit.native.guest.channel import Channel, Steps, no_core_dumps, read_job  # noqa: F401

DEFAULT_POLL_S = 0.2
#: The folder holding interpkit's top-level folders (interpkit/, native/, ...).
TREE_ROOT = Path(__file__).resolve().parents[2]
_STDERR_TAIL = 4000


# --------------------------------------------------------------------------- child side

# The child's side is guest code, re-exported so parents and children name one harness:
# ``Channel``, ``read_job``, ``no_core_dumps``, ``Steps`` (interpkit.native.guest.channel).


# --------------------------------------------------------------------------- memory of a group

def group_members(leader: int) -> set[int]:
    """Live processes in ``leader``'s process group, and every descendant of ``leader``."""
    members = {leader}
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        pid, ppid, pgrp = int(entry), int(fields[1]), int(fields[2])
        if pgrp == leader:
            members.add(pid)
        parents.setdefault(ppid, []).append(pid)
    stack = [leader]
    while stack:
        for child in parents.get(stack.pop(), ()):
            if child not in members:
                members.add(child)
                stack.append(child)
    return members


def resident_bytes(pid: int) -> int:
    """Pss of one process (smaps_rollup), or its VmRSS where smaps_rollup is unavailable; 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def group_resident_bytes(leader: int) -> int:
    return sum(resident_bytes(pid) for pid in group_members(leader))


def kill_group(leader: int) -> None:
    """SIGKILL the process group and any descendant that left it."""
    for pid in group_members(leader) - {os.getpid()}:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.killpg(leader, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- parent side

def tree_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with this interpkit tree first on PYTHONPATH, so a
    child started with ``-m interpkit.…`` runs this tree's code, under any Python."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TREE_ROOT), env.get("PYTHONPATH")]))
    return env


def signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


@dataclass(frozen=True)
class Limits:
    """``timeout_s`` None: no timeout; ``memory_limit_mb`` None: no memory limit."""

    timeout_s: float | None = 60.0
    memory_limit_mb: int | None = None
    progress_events: tuple[str, ...] = ()   # records that restart the timeout
    poll_s: float = DEFAULT_POLL_S


@dataclass(frozen=True)
class Ending:
    """How a child ended."""

    returncode: int | None
    timed_out: bool = False
    timeout_s: float | None = None
    memory: str | None = None           # why the memory limit killed it
    stderr_tail: str = ""
    start_error: str | None = None      # the child could not be started at all

    @property
    def signal(self) -> str | None:
        """The signal that ended it; None for a timeout (the kill is ours, not the cause)."""
        if self.timed_out:
            return None
        return "SIGKILL" if self.memory else signal_name(self.returncode)

    @property
    def clean(self) -> bool:
        return (self.returncode == 0 and not self.timed_out and self.memory is None
                and self.start_error is None)

    @property
    def status(self) -> str:
        """The outcome status this ending means (interpkit.native.sandbox.outcome.STATUSES)."""
        if self.clean:
            return "ok"
        if self.memory is not None:
            return "crash"      # as the kernel's OOM killer would end it: SIGKILL
        if self.timed_out:
            return "hang"
        if self.returncode is not None and self.returncode < 0:
            return "crash"
        return "error"

    def describe(self) -> str:
        """What happened to the process, as a phrase: "was killed by SIGSEGV", "exited 3", ..."""
        if self.start_error:
            return f"could not be started ({self.start_error})"
        if self.memory is not None:
            return f"ran out of memory ({self.memory}) and was killed"
        if self.timed_out:
            # Both phrasings are searched for: "timed out after" (a row's reason) and
            # "hung for N s during <step>" (a probe's, with the step appended).
            return f"timed out after {self.timeout_s:g} s, hung for {self.timeout_s:g} s"
        if self.returncode is not None and self.returncode < 0:
            return f"was killed by {self.signal}"
        return f"exited {self.returncode}"

    def cause(self) -> str:
        """The stderr line that names why the process died (fatal error, glibc abort message)."""
        lines = [line.strip() for line in self.stderr_tail.splitlines() if line.strip()]
        markers = ("Fatal Python error", "double free", "free():", "malloc():", "corrupted",
                   "Segmentation fault", "Aborted", "terminate called", "what():")
        for index, line in enumerate(lines):
            if line.startswith(markers) or any(marker in line for marker in markers[1:5]):
                # A library that prints its own error and calls exit() while other threads run
                # can die in the exit-time destructors instead (c10's "Key already registered"
                # then glibc's "double free", 1 run in ~30): the first error is the cause.
                earlier = lines[0] if index and self.signal is not None and not lines[0].startswith(
                    markers + ("Thread 0x", "Current thread", "File ")) else None
                return f"{earlier[:240]} (then: {line[:100]})" if earlier else line[:300]
        if self.clean or not lines:
            return ""
        return lines[-1][:300]


class Child:
    """One sandboxed child process; see the module doc for the protocol."""

    def __init__(self, command: list[str], job: dict | None = None, *, limits: Limits = Limits(),
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 keep_stdin_open: bool = False) -> None:
        self.limits = limits
        self.records: list[dict] = []
        self._queue: queue.Queue = queue.Queue()
        self._stderr = tempfile.TemporaryFile()
        self._killed_for: tuple[str, str | None] | None = None   # ("timeout" | "memory", detail)
        self._progress = time.monotonic()
        self._lock = threading.Lock()
        self.start_error: str | None = None
        try:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                env=env, cwd=cwd, start_new_session=True)   # its own group: killed with its children
        except OSError as exc:
            self.proc = None
            self.start_error = str(exc)
            self._queue.put(None)
            return
        self._reader = threading.Thread(target=self._read, daemon=True, name="sandbox-reader")
        self._reader.start()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="sandbox-watch")
        self._watcher.start()
        try:
            if job is not None:
                self.send(job)
            if not keep_stdin_open:
                self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # it died at once; the ending says how

    # ------------------------------------------------------------------ I/O

    def send(self, message: dict) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            with self._lock:
                self.records.append(record)
                if record.get("event") in self.limits.progress_events:
                    self._progress = time.monotonic()
            self._queue.put(record)
        self._queue.put(None)   # end of stream

    def next_record(self, timeout: float | None = None) -> dict | None:
        """The next record; None at the end of the stream. Raises queue.Empty after ``timeout``."""
        return self._queue.get(timeout=timeout)

    def __iter__(self):
        while (record := self.next_record()) is not None:
            yield record

    # ------------------------------------------------------------------ limits

    def _watch(self) -> None:
        limits = self.limits
        limit_bytes = limits.memory_limit_mb * 2**20 if limits.memory_limit_mb else None
        while self.proc.poll() is None:
            if limits.timeout_s is not None:
                with self._lock:
                    idle = time.monotonic() - self._progress
                if idle > limits.timeout_s:
                    self._kill_for("timeout", None)
                    return
            if limit_bytes is not None:
                used = group_resident_bytes(self.proc.pid)
                if used > limit_bytes:
                    self._kill_for("memory", f"memory limit {limits.memory_limit_mb} MiB: "
                                             f"{used / 2**20:.0f} MiB resident")
                    return
            time.sleep(limits.poll_s)
        # The leader is gone: anything it left in its group would keep the record pipe open.
        kill_group(self.proc.pid)

    def _kill_for(self, reason: str, detail: str | None) -> None:
        if self._killed_for is None:
            self._killed_for = (reason, detail)
        kill_group(self.proc.pid)

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ the end

    def wait(self, timeout: float | None = None) -> Ending:
        """Wait for the child (killing it after ``timeout``, if given) and say how it ended.

        Every record it wrote is in ``records`` afterwards; anything it left running is killed.
        """
        if self.proc is None:
            return Ending(None, start_error=self.start_error)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_for("timeout", None)
            self.proc.wait()
        kill_group(self.proc.pid)     # stragglers it forked; the group outlives its leader
        self._reader.join(timeout=10)
        self._watcher.join(timeout=10)
        killed = self._killed_for
        return Ending(self.proc.returncode,
                      timed_out=killed is not None and killed[0] == "timeout",
                      timeout_s=self.limits.timeout_s if timeout is None else timeout,
                      memory=killed[1] if killed is not None and killed[0] == "memory" else None,
                      stderr_tail=self.stderr_tail())

    def stderr_tail(self) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - _STDERR_TAIL))
            return self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        self._stderr.close()

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass(frozen=True)
class Run:
    """Everything a finished child wrote, and how it ended."""

    records: tuple[dict, ...]
    ending: Ending

    def of(self, event: str) -> list[dict]:
        return [record for record in self.records if record.get("event") == event]

    def last(self, event: str) -> dict | None:
        found = self.of(event)
        return found[-1] if found else None


def run(command: list[str], job: dict | None = None, *, limits: Limits = Limits(),
        env: dict[str, str] | None = None, cwd: str | None = None) -> Run:
    """Run one job to its end in a sandboxed child; never raises for what the child does."""
    with Child(command, job, limits=limits, env=env, cwd=cwd) as child:
        ending = child.wait()
        return Run(tuple(child.records), ending)
