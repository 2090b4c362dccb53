"""The subinterpreters backend: CPython 3.12/3.13 subinterpreters driven from a child process.

The tool runs on 3.11, so every probe starts another Python (found by ``interpkit.native.pythons``) on
the driver script ``_subinterp_driver.py``, run by path: that child creates N subinterpreters
with the ``isolated`` (own GIL, own obmalloc, multi-phase extensions only) or ``legacy``
(shared GIL, main-interpreter rules) configuration, imports each module in all of them, uses
it, checks whether objects are shared, destroys one interpreter and uses the module in
another. The child gets its own process group, a timeout and an address-space limit; a
crash, hang or runaway allocation of a probed module never reaches interpkit.

What each Python offers (checked by running it, see ``configuration_unavailable``):
3.13 has ``_interpreters.create('isolated' | 'legacy')``; 3.12 has
``_xxsubinterpreters.create(isolated=True | False)``, which selects the same two
``PyInterpreterConfig`` presets (``_PyInterpreterConfig_INIT`` / ``_LEGACY_INIT``), so both
configurations work on both. Finer-grained configs (e.g. own GIL with legacy extension
checks) need 3.13's ``new_config``; they are not offered.
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import pickle
import queue
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from interpkit.core.errors import InterpkitError, RuntimeUnavailable
from interpkit.native.outcome import ProbeOutcome, out_of_memory
from interpkit.native.pythons import PythonInfo, find_python

DRIVER = Path(__file__).with_name("_subinterp_driver.py")
CONFIGURATIONS = ("isolated", "legacy")
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_LIMIT_MB = 4096
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class ModuleTarget:
    """A module to probe: its dotted name and, for extensions, the binary to load by file."""

    name: str
    path: Path | None = None


def resolve_python(python: str | PythonInfo, configured: tuple[str, ...] = ()) -> PythonInfo:
    """A PythonInfo as given, or found by version/path among the candidates (``configured``
    comes from ``[tool.interpkit] interpreters``)."""
    return python if isinstance(python, PythonInfo) else find_python(python, configured)


def configuration_unavailable(python: PythonInfo, config: str) -> str | None:
    """None when ``config`` can be created on ``python``, else the reason it cannot."""
    if config not in CONFIGURATIONS:
        return f"unknown configuration {config!r} (use {' or '.join(CONFIGURATIONS)})"
    return python.unsupported_reason()


# --------------------------------------------------------------------------- child processes

class _Child:
    """One driver process: JSON job in, JSON-line events out, stderr kept in a temp file."""

    def __init__(self, python: PythonInfo, job: dict, memory_limit_mb: int | None,
                 keep_stdin_open: bool = False) -> None:
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(python.executable), "-I", "-X", "faulthandler", str(DRIVER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file,
            start_new_session=True,  # its own process group: a timeout kills everything it forked
        )
        self.events: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        # The driver applies the address-space limit to itself before loading anything
        # (no preexec_fn: it is unsafe in a threaded parent such as pytest or the runtime).
        self.send({**job, "memory_limit_mb": memory_limit_mb})
        if not keep_stdin_open:
            self.proc.stdin.close()

    def send(self, message: dict) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue
        self.events.put(None)   # end of stream

    def next_event(self, timeout: float | None) -> dict | None:
        """The next event; None at end of stream; raises queue.Empty on timeout."""
        return self.events.get(timeout=timeout)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()

    def stderr_tail(self) -> str:
        self.stderr_file.seek(0, os.SEEK_END)
        size = self.stderr_file.tell()
        self.stderr_file.seek(max(0, size - _STDERR_TAIL))
        return self.stderr_file.read().decode(errors="replace").strip()

    def close(self) -> None:
        self.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.stderr_file.close()


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _first_fatal_line(stderr: str) -> str:
    """The line of a faulthandler/fatal-error dump that names the cause."""
    for line in stderr.splitlines():
        if line.startswith(("Fatal Python error", "Segmentation fault", "Aborted")):
            return line.strip()
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _where(step: dict | None) -> str:
    if not step:
        return "before the first step"
    where = f"during {step['step']}"
    if "interpreter" in step:
        where += f" in interpreter {step['interpreter']}"
    return where


@dataclass
class _BatchRun:
    outcomes: dict[str, ProbeOutcome]
    complete: bool            # every module answered and the child exited cleanly


def _run_batch(python: PythonInfo, job: dict, names: list[str], timeout_s: float,
               memory_limit_mb: int | None) -> _BatchRun:
    """Run one child over ``names``; modules it never answered for get crash/hang/error
    outcomes describing how the child ended."""
    child = _Child(python, job, memory_limit_mb)
    outcomes: dict[str, ProbeOutcome] = {}
    steps: dict[str, list[dict]] = {name: [] for name in names}
    timed_out = False
    memory = None   # why a hung child counts as out of memory
    done = False
    try:
        deadline = time.monotonic() + timeout_s   # per module: reset by every result
        while True:
            try:
                event = child.next_event(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                timed_out = True
                memory = out_of_memory(child.proc.pid, memory_limit_mb)
                child.kill()
                break
            if event is None:
                break
            kind = event.get("event")
            if kind == "step":
                record = {k: v for k, v in event.items() if k not in ("event", "module")}
                steps.setdefault(event["module"], []).append(record)
            elif kind == "result":
                outcomes[event["module"]] = ProbeOutcome.from_json(event["outcome"])
                deadline = time.monotonic() + timeout_s
            elif kind == "done":
                done = True
        returncode = child.wait()
        stderr = child.stderr_tail()
    finally:
        child.close()

    died = timed_out or returncode != 0 or not done
    if died:
        if memory is not None:
            status, sig = "crash", "SIGKILL"   # as the kernel's OOM killer would end it
        elif timed_out:
            status, sig = "hang", None
        elif returncode < 0:
            status, sig = "crash", _signal_name(returncode)
        else:
            status, sig = "error", None
        how = f"{memory} and was killed" if memory is not None else _death(timed_out, returncode, timeout_s)
        cause = _first_fatal_line(stderr)
        for name in names:
            taken = steps.get(name, [])
            answered = outcomes.get(name)
            if answered is None:
                where = _where(taken[-1] if taken else None)
                outcomes[name] = ProbeOutcome(
                    status=status, signal=sig, steps=tuple(taken),
                    message=f"the probe process {how} {where}" + (f": {cause}" if cause else ""))
            elif answered.ok and len(names) == 1:
                # It answered, then the process died on its way out (interpreter shutdown).
                outcomes[name] = ProbeOutcome(
                    status=status, signal=sig, steps=answered.steps,
                    shared_state=answered.shared_state,
                    message=f"the probe finished, then the process {how} at shutdown"
                            + (f": {cause}" if cause else ""))
    return _BatchRun(outcomes=outcomes, complete=not died)


def _death(timed_out: bool, returncode: int, timeout_s: float) -> str:
    if timed_out:
        return f"hung for {timeout_s:g} s"
    if returncode < 0:
        return f"died by {_signal_name(returncode)}"
    return f"exited {returncode}"


def _run_modules(mode: str, targets: list[ModuleTarget], *, python: PythonInfo, extra: dict,
                 sys_path: tuple[str, ...], timeout_s: float, memory_limit_mb: int | None,
                 batch_size: int) -> dict[str, ProbeOutcome]:
    """Probe many modules, ``batch_size`` per child for speed. When a batch child dies or
    hangs, every module of that batch is probed again, one per child, so that one crashing
    module never decides another's outcome."""
    def job_for(batch: list[ModuleTarget]) -> dict:
        return {"mode": mode, **extra, "sys_path": list(sys_path),
                "modules": [{"name": t.name, "path": str(t.path) if t.path else None}
                            for t in batch]}

    results: dict[str, ProbeOutcome] = {}
    for start in range(0, len(targets), max(1, batch_size)):
        batch = targets[start:start + max(1, batch_size)]
        names = [t.name for t in batch]
        run = _run_batch(python, job_for(batch), names, timeout_s, memory_limit_mb)
        if not run.complete and len(batch) > 1:
            for target in batch:
                single = _run_batch(python, job_for([target]), [target.name], timeout_s,
                                    memory_limit_mb)
                results.update(single.outcomes)
        else:
            results.update(run.outcomes)
        for name in names:
            results.setdefault(name, ProbeOutcome(status="error", message="child gave no answer"))
    return results


# --------------------------------------------------------------------------- public probes

def probe_modules(targets: list[ModuleTarget], *, python: str | PythonInfo = "3.13",
                  config: str = "isolated", n: int = 2, sys_path: tuple[str, ...] = (),
                  timeout_s: float = DEFAULT_TIMEOUT_S,
                  memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB,
                  batch_size: int = 16) -> dict[str, ProbeOutcome]:
    """Import and use each module in ``n`` subinterpreters of ``config``; outcome per name.

    Raises RuntimeUnavailable when the Python or configuration is not available here.
    """
    info = resolve_python(python)
    reason = configuration_unavailable(info, config)
    if reason:
        raise RuntimeUnavailable(f"cannot probe with {config} subinterpreters ({reason})")
    if n < 1:
        raise ValueError("n must be at least 1")
    return _run_modules("probe", targets, python=info, extra={"config": config, "n": n},
                        sys_path=sys_path, timeout_s=timeout_s,
                        memory_limit_mb=memory_limit_mb, batch_size=batch_size)


def probe_module(name: str, path: Path | str | None = None, *, file: Path | str | None = None,
                 interpreters: int = 2, timeout: float = DEFAULT_TIMEOUT_S,
                 python: str | PythonInfo | None = None, config: str = "isolated",
                 memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB) -> ProbeOutcome:
    """Probe one module in ``interpreters`` subinterpreters of ``config``.

    ``path`` is a sys.path entry (the module is then imported by name, packages included)
    or the extension binary itself; ``file`` names the binary explicitly. A binary is
    loaded by file, so the answer is about that binary and not its package's ``__init__``.
    """
    sys_path: tuple[str, ...] = ()
    if path is not None and Path(path).is_dir():
        sys_path = (str(path),)
    elif path is not None and file is None:
        file = path
    target = ModuleTarget(name, Path(file) if file else None)
    return probe_modules([target], python=python or "3.13", config=config, n=interpreters,
                         sys_path=sys_path, timeout_s=timeout,
                         memory_limit_mb=memory_limit_mb)[name]


def baseline_imports(targets: list[ModuleTarget], *, python: str | PythonInfo = "3.13",
                     sys_path: tuple[str, ...] = (), timeout_s: float = DEFAULT_TIMEOUT_S,
                     memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB,
                     batch_size: int = 16) -> dict[str, ProbeOutcome]:
    """Import each module in the main interpreter only: a module that fails here is broken
    on its own (missing dependency, wrong Python), not refused by subinterpreters."""
    info = resolve_python(python)
    return _run_modules("baseline", targets, python=info, extra={}, sys_path=sys_path,
                        timeout_s=timeout_s, memory_limit_mb=memory_limit_mb,
                        batch_size=batch_size)


def native_imports(outcome: ProbeOutcome) -> list[str]:
    """Compiled modules the probed import pulled in (the probe's "dependencies" step)."""
    return [name for step in outcome.steps for name in step.get("native_imports", ())]


def blame_dependencies(outcomes: dict[str, ProbeOutcome], *, python: str | PythonInfo = "3.13",
                       config: str = "isolated", n: int = 2, sys_path: tuple[str, ...] = (),
                       timeout_s: float = DEFAULT_TIMEOUT_S,
                       memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB) -> dict[str, tuple[str, ProbeOutcome]]:
    """For each crashed or hung module, probe alone (by name) every compiled module its import
    pulled in; return {module: (dependency, the dependency's own outcome)} for those whose
    failure a dependency reproduces by itself, so the crash is not pinned on the wrong binary.
    """
    suspects: dict[str, list[str]] = {}
    for module, outcome in outcomes.items():
        if outcome.status in ("crash", "hang"):
            for dependency in native_imports(outcome):
                suspects.setdefault(dependency, []).append(module)
    if not suspects:
        return {}
    alone = probe_modules([ModuleTarget(name) for name in sorted(suspects)], python=python,
                          config=config, n=n, sys_path=sys_path, timeout_s=timeout_s,
                          memory_limit_mb=memory_limit_mb, batch_size=1)
    blamed: dict[str, tuple[str, ProbeOutcome]] = {}
    for dependency in sorted(suspects):
        if alone[dependency].status in ("crash", "hang"):
            for module in suspects[dependency]:
                blamed.setdefault(module, (dependency, alone[dependency]))
    return blamed


# --------------------------------------------------------------------------- parallel work

def parallel_speedup(python: str | PythonInfo = "3.13", n: int = 2, loops: int = 2_000_000,
                     repeat: int = 3, timeout_s: float = 300.0) -> dict:
    """Time a Python-bound loop in 1 own-GIL interpreter, in ``n`` own-GIL interpreters on
    ``n`` threads, and on ``n`` threads of one interpreter (best of ``repeat``).

    ``speedup`` is throughput of n interpreters over one (n * t1 / tn); ``threads_speedup``
    the same for n threads sharing one GIL.
    """
    info = resolve_python(python)
    reason = configuration_unavailable(info, "isolated")
    if reason:
        raise RuntimeUnavailable(f"cannot run own-GIL interpreters ({reason})")
    child = _Child(info, {"mode": "bench", "n": n, "loops": loops, "repeat": repeat}, None)
    result = None
    try:
        while True:
            event = child.next_event(timeout_s)
            if event is None:
                break
            if event.get("event") == "result":
                result = event
        returncode = child.wait()
        stderr = child.stderr_tail()
    except queue.Empty:
        raise InterpkitError(f"cannot finish the parallel benchmark (no answer in {timeout_s:g} s)") from None
    finally:
        child.close()
    if result is None:
        raise InterpkitError(f"cannot finish the parallel benchmark (child exited {returncode}: "
                             f"{_first_fatal_line(stderr)})")
    one, many, threads = (result["one_interpreter_s"], result["n_interpreters_s"],
                          result["n_threads_one_interpreter_s"])
    return {
        "python": result["python"], "n": n, "loops": loops, "cpu_count": result["cpu_count"],
        "one_interpreter_s": one, "n_interpreters_s": many, "n_threads_one_interpreter_s": threads,
        "speedup": n * one / many, "threads_speedup": n * one / threads,
    }


# --------------------------------------------------------------------------- runtime API

class SubinterpreterError(InterpkitError):
    """Code inside a subinterpreter raised; str() carries the remote traceback text."""


class SubinterpreterRuntime:
    """N subinterpreters of one child Python, one serving thread each, like native.Runtime.

    Arguments and results cross as pickles, so they must be plain data both Pythons know.
    Use as a context manager; ``close()`` destroys the interpreters and ends the child.
    """

    def __init__(self, n: int = 2, python: str | PythonInfo = "3.13", config: str = "isolated",
                 sys_path: tuple[str, ...] = (), timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB) -> None:
        self.python = resolve_python(python)
        reason = configuration_unavailable(self.python, config)
        if reason:
            raise RuntimeUnavailable(f"cannot start {config} subinterpreters ({reason})")
        self.n = n
        self.timeout_s = timeout_s
        self._ids = itertools.count()
        self._pending: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._child = _Child(self.python, {"mode": "serve", "n": n, "config": config,
                                           "sys_path": list(sys_path)},
                             memory_limit_mb, keep_stdin_open=True)
        ready = self._child.next_event(timeout_s)
        if not ready or ready.get("event") != "ready":
            stderr = self._child.stderr_tail()
            self._child.close()
            raise InterpkitError(f"cannot start {n} {config} subinterpreters "
                                 f"({_first_fatal_line(stderr) or 'child ended'})")
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True)
        self._dispatcher.start()

    def _dispatch(self) -> None:
        while True:
            event = self._child.next_event(None)
            if event is None or event.get("event") == "closed":
                with self._lock:
                    for waiter in self._pending.values():
                        waiter.put(None)
                    self._pending.clear()
                return
            if event.get("event") == "reply":
                with self._lock:
                    waiter = self._pending.pop(event["id"], None)
                if waiter is not None:
                    waiter.put(event["result"])

    def _submit(self, message: dict) -> queue.Queue:
        if not 0 <= message["interpreter"] < self.n:
            raise IndexError(f"cannot use interpreter {message['interpreter']} (have {self.n})")
        waiter: queue.Queue = queue.Queue()
        with self._lock:
            message["id"] = next(self._ids)
            self._pending[message["id"]] = waiter
            self._child.send(message)
        return waiter

    def _wait(self, waiter: queue.Queue, what: str) -> dict:
        try:
            result = waiter.get(timeout=self.timeout_s)
        except queue.Empty:
            raise InterpkitError(f"cannot {what} (no answer in {self.timeout_s:g} s)") from None
        if result is None:
            raise InterpkitError(f"cannot {what} (the child process ended: "
                                 f"{_first_fatal_line(self._child.stderr_tail())})")
        if not result.get("ok"):
            raise InterpkitError(f"cannot {what} ({result.get('type')}: {result.get('message')})")
        if "raised" in result:
            raise SubinterpreterError(result["raised"].rstrip())
        return result

    def run(self, interpreter: int, source: str) -> None:
        """Execute ``source`` in the interpreter's ``__main__``."""
        self._wait(self._submit({"op": "run", "interpreter": interpreter, "source": source}),
                   f"run code in interpreter {interpreter}")

    def _call_message(self, interpreter: int, target: str, args, kwargs) -> dict:
        payload = base64.b64encode(pickle.dumps((args, kwargs), protocol=4)).decode()
        return {"op": "call", "interpreter": interpreter, "target": target, "payload": payload}

    def call(self, interpreter: int, target: str, *args, **kwargs):
        """Call ``"module:function"`` in one interpreter; return its (unpickled) result."""
        waiter = self._submit(self._call_message(interpreter, target, args, kwargs))
        result = self._wait(waiter, f"call {target} in interpreter {interpreter}")
        return pickle.loads(base64.b64decode(result["value"]))

    def call_all(self, target: str, *args, **kwargs) -> list:
        """The same call in every interpreter at once (each on its own thread)."""
        waiters = [self._submit(self._call_message(i, target, args, kwargs)) for i in range(self.n)]
        results = [self._wait(w, f"call {target} in interpreter {i}") for i, w in enumerate(waiters)]
        return [pickle.loads(base64.b64decode(r["value"])) for r in results]

    def close(self) -> None:
        if self._child.proc.poll() is None:
            try:
                self._child.send({"op": "close"})
                self._child.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            self._child.wait(timeout=self.timeout_s)
        self._dispatcher.join(timeout=5)
        self._child.close()

    def __enter__(self) -> "SubinterpreterRuntime":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
