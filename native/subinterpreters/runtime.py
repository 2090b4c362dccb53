"""The subinterpreters backend: CPython 3.12/3.13 subinterpreters driven from a child process.

The tool runs on 3.11, so every probe starts another Python (found by ``interpkit.native.pythons``) on
the driver script ``guest/subinterp_driver.py``, run by path: that child creates N subinterpreters
with the ``isolated`` (own GIL, own obmalloc, multi-phase extensions only) or ``legacy``
(shared GIL, main-interpreter rules) configuration, imports each module in all of them, uses
it, checks whether objects are shared, destroys one interpreter and uses the module in
another. The child runs in the sandbox (``interpkit.native.sandbox``: its own process group,
a timeout, a resident-memory limit); a crash, hang or runaway allocation of a probed module
never reaches interpkit.

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
import pickle
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from interpkit.core.errors import InterpkitError, RuntimeUnavailable
from interpkit.native import sandbox
from interpkit.native.sandbox.outcome import ProbeOutcome, merge_steps, outcome_from_records
from interpkit.native.pythons import PythonInfo, find_python

DRIVER = Path(__file__).parent.parent / "guest" / "subinterp_driver.py"
CONFIGURATIONS = ("isolated", "legacy")
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_LIMIT_MB = 4096


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

def _driver(python: PythonInfo, job: dict, memory_limit_mb: int | None,
            timeout_s: float | None = None, *, keep_stdin_open: bool = False,
            progress_events: tuple[str, ...] = ()) -> sandbox.Child:
    """The driver script under ``python`` in the sandbox (own process group, resident-memory
    limit, timeout), with ``job`` on its stdin."""
    return sandbox.Child([str(python.executable), "-I", "-X", "faulthandler", str(DRIVER)], job,
                         limits=sandbox.Limits(timeout_s=timeout_s, memory_limit_mb=memory_limit_mb,
                                               progress_events=progress_events),
                         keep_stdin_open=keep_stdin_open)


def _first_fatal_line(stderr: str) -> str:
    """The line of a faulthandler/fatal-error dump that names the cause."""
    return sandbox.Ending(1, stderr_tail=stderr).cause()


@dataclass
class _BatchRun:
    outcomes: dict[str, ProbeOutcome]
    complete: bool            # every module answered and the child exited cleanly


def _run_batch(python: PythonInfo, job: dict, names: list[str], timeout_s: float,
               memory_limit_mb: int | None) -> _BatchRun:
    """Run one child over ``names``; modules it never answered for get crash/hang/error
    outcomes describing how the child ended. The timeout bounds each module: every result
    restarts it."""
    with _driver(python, job, memory_limit_mb, timeout_s, progress_events=("result",)) as child:
        ending = child.wait()
        records = list(child.records)
    done = any(record.get("event") == "done" for record in records)
    died = not ending.clean or not done
    outcomes: dict[str, ProbeOutcome] = {}
    for name in names:
        mine = [record for record in records if record.get("module") == name]
        results = [record for record in mine if record.get("event") == "result"]
        reported = results[-1]["outcome"] if results else None
        if reported is not None and (not died or len(names) > 1):
            # Answered; in a batch that died, it is probed again alone anyway.
            outcomes[name] = ProbeOutcome.from_json(reported)
        elif died:
            outcomes[name] = outcome_from_records(merge_steps(mine), reported, ending)
    return _BatchRun(outcomes=outcomes, complete=not died)


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
    with _driver(info, {"mode": "bench", "n": n, "loops": loops, "repeat": repeat}, None,
                 timeout_s) as child:
        ending = child.wait()
        results = [record for record in child.records if record.get("event") == "result"]
    if not results:
        raise InterpkitError(f"cannot finish the parallel benchmark (the child {ending.describe()}"
                             + (f": {ending.cause()})" if ending.cause() else ")"))
    result = results[-1]
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
        # No sandbox timeout: a server is idle between requests; each request has its own.
        self._child = _driver(self.python, {"mode": "serve", "n": n, "config": config,
                                            "sys_path": list(sys_path)},
                              memory_limit_mb, None, keep_stdin_open=True)
        try:
            ready = self._child.next_record(timeout_s)
        except queue.Empty:
            ready = None
        if not ready or ready.get("event") != "ready":
            self._child.kill()
            ending = self._child.wait()
            self._child.close()
            raise InterpkitError(f"cannot start {n} {config} subinterpreters "
                                 f"({ending.cause() or 'child ended'})")
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True)
        self._dispatcher.start()

    def _dispatch(self) -> None:
        while True:
            event = self._child.next_record(None)
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
        if self._child.alive():
            try:
                self._child.send({"op": "close"})
                self._child.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        self.ending = self._child.wait(timeout=self.timeout_s)
        self._dispatcher.join(timeout=5)
        self._child.close()

    def __enter__(self) -> "SubinterpreterRuntime":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
