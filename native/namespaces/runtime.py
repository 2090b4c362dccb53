"""The namespaces runtime's Python API: N interpreters in this process, fed with pickles.

Each interpreter is the running Python's shared libpython loaded again with
``dlmopen(LM_ID_NEWLM)`` and served by one OS thread for its whole life (see
``native/namespaces/runtime.c``). Requests and answers are pickles, so arguments and results must be
picklable by both sides (the same Python version, so anything the host can unpickle).

Example::

    from interpkit.native import Runtime

    with Runtime(2) as rt:
        rt.run(0, "x = 41")
        rt.eval(0, "x + 1")                      # 42
        rt.call(1, "math:factorial", 5)          # 120
        rt.call_all("os:getpid")                 # [pid, pid]: one process
        rt.map("math:sqrt", [1, 4, 9])           # spread over free interpreters
        rt.stop(0)                               # finalized; interpreter 1 serves on
    rt.teardown                                  # (TeardownRecord(0, "finalized", ...), ...)
"""
from __future__ import annotations

import os
import pickle
import queue
import sys
import threading
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interpkit.native import _interpkit, limits
from interpkit.native.requests import InterpreterRequests
from interpkit.native.errors import (
    InterpreterClosed,
    InterpreterTimeout,
    RemoteError,
    RuntimeStartError,
)

# Run in each interpreter's __main__ before anything else. The guard goes first: nothing may
# dlopen with RTLD_GLOBAL before it is installed (docs/facts.md fact 3). ``_ik_index`` is set by
# the C worker.
# The thread budget goes next: the OpenMP/BLAS variables are read once, when those libraries
# load, so they must be in this interpreter's environment before anything imports them.
_BOOTSTRAP = """\
import sys as _ik_sys
_ik_sys.path[:] = {sys_path!r} + [p for p in _ik_sys.path if p not in {sys_path!r}]
import interpkit.native.guest.guard
interpkit.native.guest.guard.install()
from interpkit.native.guest.interp_server import handle as _ik_handle, apply_thread_budget
apply_thread_budget({threads!r})
del apply_thread_budget
"""

TEARDOWN_POLICIES = ("finalize", "retire")

_live_lock = threading.Lock()
_live_interpreters = 0          # namespaced interpreters running in this process
# Namespaces dlmopen'd by this process so far. glibc 2.36 neither reuses a namespace id nor
# gives back its static TLS after dlclose (measured: ids keep rising across start/close
# cycles), so the limits of docs/facts.md fact 5 are a budget for the whole process lifetime.
_opened_namespaces = 0


@dataclass(frozen=True)
class LoadedObject:
    """One object in an interpreter's link-map namespace: its path and load bias."""

    path: str
    base: int
    namespace: int


def _live(delta: int, opened: int = 0) -> int:
    global _live_interpreters, _opened_namespaces
    with _live_lock:
        _live_interpreters += delta
        _opened_namespaces += opened
        return _live_interpreters


@dataclass(frozen=True)
class TeardownRecord:
    """What happened to one interpreter at teardown (``Runtime.teardown``).

    ``outcome``: ``"finalized"`` (Py_FinalizeEx ran on its own thread, which was joined;
    ``finalize_rc`` is its result), ``"retired"`` (not finalized on purpose, see ``reason``:
    its thread is parked for the life of the process, holding no GIL, and its libraries'
    finalizers and atexit handlers never run) or ``"lost"`` (a request never came back, or
    finalization did not finish in time: its thread is left running). ``seconds`` is how long
    finalization took (0 when it did not run).
    """

    index: int
    outcome: str
    reason: str = ""
    finalize_rc: int | None = None
    seconds: float = 0.0

    @property
    def retired(self) -> bool:
        """True unless the interpreter was finalized."""
        return self.outcome != "finalized"

    def as_dict(self) -> dict:
        return {"index": self.index, "outcome": self.outcome, "reason": self.reason,
                "finalize_rc": self.finalize_rc, "seconds": round(self.seconds, 3)}


def default_threads_per_interpreter(n: int) -> int:
    """max(1, usable cores // n): N interpreters together fill the cores, not N times over."""
    return max(1, len(os.sched_getaffinity(0)) // n)


_runtimes: weakref.WeakSet[Runtime] = weakref.WeakSet()


def _abandon_after_fork() -> None:
    # A forked child copies the namespaces but none of the worker threads: its runtimes
    # are unusable, and closing one would wait forever for threads that do not exist.
    global _live_interpreters, _live_lock
    _live_lock = threading.Lock()
    _live_interpreters = 0
    for runtime in list(_runtimes):
        runtime._abandon()


os.register_at_fork(after_in_child=_abandon_after_fork)


def opened_namespaces() -> int:
    """How many link-map namespaces this process has dlmopen'd (none is ever given back)."""
    return _opened_namespaces


class Runtime(InterpreterRequests):
    """``n`` isolated interpreters in this process, each in its own link-map namespace.

    ``libpython`` defaults to the running Python's own shared library; ``timeout`` (seconds)
    bounds every request (None: wait forever); ``sys_path`` (default: the host's ``sys.path``)
    is put in front of each interpreter's own ``sys.path``.

    ``threads_per_interpreter`` sizes each interpreter's intra-op thread pools (OpenMP, MKL,
    OpenBLAS, torch's intra-op and inter-op pools): None gives max(1, cores // n), so the
    interpreters together do not oversubscribe the cores; 0 leaves the libraries' own
    defaults (each would start a pool as large as the machine). ``teardown`` is what
    ``stop``/``close`` do by default: ``"finalize"`` (Py_FinalizeEx on the interpreter's own
    thread, unless the interpreter shows a reason it would hang, then it is retired) or
    ``"retire"`` (never finalize; for libraries that cannot be torn down safely).
    ``rt.teardown`` records what happened to each interpreter.
    """

    def __init__(self, n: int, *, libpython: str | os.PathLike | None = None,
                 timeout: float | None = None, sys_path: Iterable[str] | None = None,
                 start_timeout: float = 300.0, threads_per_interpreter: int | None = None,
                 teardown: str = "finalize") -> None:
        if n < 1:
            raise ValueError(f"cannot start {n} interpreters (need at least 1)")
        if threads_per_interpreter is not None and (
                isinstance(threads_per_interpreter, bool) or not isinstance(threads_per_interpreter, int)
                or threads_per_interpreter < 0):
            raise ValueError(f"threads_per_interpreter must be an integer >= 0 or None "
                             f"(got {threads_per_interpreter!r})")
        if teardown not in TEARDOWN_POLICIES:
            raise ValueError(f"teardown must be one of {', '.join(TEARDOWN_POLICIES)} (got {teardown!r})")
        path = Path(libpython) if libpython is not None else limits.find_libpython()
        reason = limits.check_libpython(path)
        if reason:
            raise RuntimeStartError(f"cannot use {path} as libpython ({reason})")
        refused = limits.too_many(n)
        if refused:
            raise refused
        self.n = n
        self.timeout = timeout
        self.libpython = path
        #: Threads each interpreter's pools get (0: the libraries' defaults, no budget).
        self.threads_per_interpreter = (default_threads_per_interpreter(n)
                                        if threads_per_interpreter is None else threads_per_interpreter)
        self.teardown_policy = teardown
        self._teardown: dict[int, TeardownRecord] = {}
        entries = [str(p) for p in (sys.path if sys_path is None else sys_path)]
        bootstrap = _BOOTSTRAP.format(sys_path=entries, threads=self.threads_per_interpreter)
        try:
            self._native = _interpkit.Runtime(str(path), sys.executable, bootstrap, n,
                                              start_timeout)
        except _interpkit.NativeError as exc:
            status, index, message = exc.args
            opened = _opened_namespaces
            # All dlmopen calls run before any interpreter initializes.
            _live(0, opened=index if status == _interpkit.ERR_DLMOPEN else n)
            raise self._start_error(status, index, message, opened) from None
        _live(n, opened=n)
        self._stopped: set[int] = set()
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(n):
            self._free.put(index)
        self._pool: ThreadPoolExecutor | None = None
        self._broadcast: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._forked = False
        _runtimes.add(self)

    def _abandon(self) -> None:
        if self._native is not None:
            self._native.abandon()
            self._native = None
        self._pool = self._broadcast = None   # their threads stayed in the parent
        self._forked = True

    # ------------------------------------------------------------------ errors

    @staticmethod
    def _start_error(status: int, index: int, message: str, opened: int) -> Exception:
        if status == _interpkit.ERR_DLMOPEN:
            limit = limits.limit_error(message, opened=opened + index)
            if limit is not None:
                return limit
            return RuntimeStartError(f"cannot load interpreter {index} ({message})")
        return RuntimeStartError(message)

    def _raise(self, exc: _interpkit.NativeError, index: int) -> None:
        status, _, message = exc.args
        if status == _interpkit.ERR_TIMEOUT:
            raise InterpreterTimeout(message) from None
        if status == _interpkit.ERR_CLOSED:
            raise InterpreterClosed(message) from None
        if status == _interpkit.ERR_REMOTE:
            raise RemoteError(index, "InternalError", message, "") from None
        raise RuntimeStartError(message) from None

    # ------------------------------------------------------------------ requests

    def _request(self, index: int, *message: Any, timeout: float | None = None) -> Any:
        if self._native is None:
            reason = "forked: it belongs to the parent process" if self._forked else "closed"
            raise InterpreterClosed(f"cannot use runtime ({reason})")
        if not 0 <= index < self.n:
            raise IndexError(f"no interpreter {index} (runtime has {self.n})")
        limit = self.timeout if timeout is None else timeout
        try:
            answer = self._native.submit(index, pickle.dumps(message), limit or 0.0)
        except _interpkit.NativeError as exc:
            self._raise(exc, index)
        ok, value = pickle.loads(answer)
        if not ok:
            raise RemoteError(index, *value)
        return value

    # ------------------------------------------------------------------ introspection

    def alive(self, index: int) -> bool:
        return self._native is not None and self._native.alive(index)

    def namespace_id(self, index: int) -> int:
        """glibc link-map namespace id (Lmid_t) of interpreter ``index``; -1 once unloaded."""
        if self._native is None:
            return -1
        return self._native.namespace(index)

    def namespace_libs(self, index: int) -> list[LoadedObject]:
        """Every object loaded in interpreter ``index``'s namespace, from its link map.

        ``base`` is the load bias (``l_addr``); together with the path it attributes the
        lines of ``/proc/self/smaps`` to this interpreter. Objects with an empty path (the
        namespace's anchor entry) are left out.
        """
        if self._native is None:
            raise InterpreterClosed("cannot list objects (runtime closed)")
        namespace = self._native.namespace(index)
        try:
            entries = self._native.linkmap(index)
        except _interpkit.NativeError as exc:
            raise InterpreterClosed(exc.args[2]) from None
        return [LoadedObject(path, base, namespace) for path, base in entries if path]

    # ------------------------------------------------------------------ teardown

    @property
    def teardown(self) -> tuple[TeardownRecord, ...]:
        """One record per interpreter torn down so far (all of them after ``close``), by index."""
        return tuple(self._teardown[index] for index in sorted(self._teardown))

    def _finalize_hazard(self, index: int) -> str:
        """Why finalizing interpreter ``index`` would hang, as the interpreter sees it ("" if none)."""
        try:
            return self._request(index, "teardown_check", timeout=30.0) or ""
        except (InterpreterClosed, InterpreterTimeout, RemoteError):
            # Busy past the check's timeout, lost, or broken: no positive sign of a hang, so
            # finalize as asked (the C side waits for a request in flight, and reports a loss).
            return ""

    def _record(self, index: int, reason: str = "") -> TeardownRecord:
        state, rc, seconds = self._native.teardown(index)
        if state == _interpkit.TEARDOWN_FINALIZED:
            record = TeardownRecord(index, "finalized",
                                    "" if rc == 0 else "Py_FinalizeEx returned -1 (an error while "
                                                       "flushing or running atexit handlers)", rc, seconds)
        elif state == _interpkit.TEARDOWN_RETIRED:
            record = TeardownRecord(index, "retired", reason or "retired on request")
        elif state == _interpkit.TEARDOWN_LOST:
            record = TeardownRecord(index, "lost", "a request never came back (blocked in C with "
                                                   "the GIL held); its thread is left running")
        elif state == _interpkit.TEARDOWN_FINALIZING:
            record = TeardownRecord(index, "lost", reason or "finalization did not finish in time; "
                                                             "its thread is left running")
        else:
            record = TeardownRecord(index, "lost", reason or "never started")
        self._teardown[index] = record
        return record

    def _retire_reason(self, index: int, finalize: bool | None) -> str:
        """"" to finalize interpreter ``index``, else why it is retired instead."""
        if finalize is False or (finalize is None and self.teardown_policy == "retire"):
            return "retired on request (teardown='retire')" if finalize is None else \
                "retired on request (finalize=False)"
        if not self.alive(index):
            return ""
        hazard = self._finalize_hazard(index)
        return f"not finalized: {hazard}" if hazard else ""

    def stop(self, index: int, timeout: float | None = None, *,
             finalize: bool | None = None) -> TeardownRecord | None:
        """Tear interpreter ``index`` down on its own thread; the others keep running.

        It is finalized, unless ``finalize=False`` (or the runtime's ``teardown="retire"``), or
        the interpreter shows a reason finalizing would hang (a non-daemon thread still
        running): then it is retired. Returns its ``TeardownRecord`` (None if the runtime is
        closed). Never kills the process; raises InterpreterClosed for a lost interpreter and
        InterpreterTimeout when finalization does not finish within ``timeout`` (both also
        recorded).
        """
        if self._native is None:
            return None
        if index in self._stopped:
            return self._teardown.get(index)
        if not 0 <= index < self.n:
            raise IndexError(f"no interpreter {index} (runtime has {self.n})")
        reason = self._retire_reason(index, finalize)
        try:
            if reason:
                self._native.retire(index, timeout or 0.0)
            else:
                self._native.stop(index, timeout or 0.0)
        except _interpkit.NativeError as exc:
            self._record(index, exc.args[2])
            self._raise(exc, index)
        finally:
            self._stopped.add(index)
            _live(-1)
        return self._record(index, reason)

    def close(self, timeout: float | None = None) -> tuple[TeardownRecord, ...]:
        """Tear every interpreter down (in parallel) and join the threads (docs/facts.md fact 7).

        Each is finalized or retired as in ``stop``; returns ``self.teardown``. Raises
        InterpreterClosed when some worker could not be joined (a request stuck in C code);
        its thread is left running, without the GIL of any other interpreter, and the records
        say which.
        """
        if self._native is None:
            return self.teardown
        for pool in (self._pool, self._broadcast):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        native = self._native
        remaining = [index for index in range(self.n) if index not in self._stopped]
        reasons = {index: self._retire_reason(index, None) for index in remaining}
        for index, reason in reasons.items():
            if reason:
                try:
                    native.retire(index, timeout or 0.0)
                except _interpkit.NativeError:
                    pass                      # lost: recorded below
        leaked = native.shutdown(timeout or 0.0)
        for index in remaining:
            self._record(index, reasons[index])
        self._stopped.update(remaining)
        self._native = None
        native.close(0.0)
        _live(-len(remaining))
        if leaked:
            raise InterpreterClosed(
                f"cannot close {leaked} interpreter(s) (a request never came back; "
                "their threads are left running)")
        return self.teardown

    def __repr__(self) -> str:
        state = "closed" if self._native is None else f"{len(self.live_indices())} live"
        return f"<Runtime n={self.n} {state} libpython={self.libpython.name}>"
