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
import sys
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from interpkit.native import _interpkit, limits
from interpkit.native.errors import InterpreterClosed, RemoteError, RuntimeStartError
from interpkit.native.protocol import TEARDOWN_POLICIES, LoadedObject, RuntimeTeardown, TeardownRecord, checked_start
from interpkit.native.requests import InterpreterRequests

__all__ = ["Runtime", "LoadedObject", "TeardownRecord", "TEARDOWN_POLICIES", "opened_namespaces",
           "default_threads_per_interpreter"]

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

_live_lock = threading.Lock()
_live_interpreters = 0          # namespaced interpreters running in this process
# Namespaces dlmopen'd by this process so far. glibc 2.36 neither reuses a namespace id nor
# gives back its static TLS after dlclose (measured: ids keep rising across start/close
# cycles), so the limits of docs/facts.md fact 5 are a budget for the whole process lifetime.
_opened_namespaces = 0


def _live(delta: int, opened: int = 0) -> int:
    global _live_interpreters, _opened_namespaces
    with _live_lock:
        _live_interpreters += delta
        _opened_namespaces += opened
        return _live_interpreters


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


class Runtime(RuntimeTeardown, InterpreterRequests):
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

    backend = "namespaces"

    def __init__(self, n: int, *, libpython: str | os.PathLike | None = None,
                 timeout: float | None = None, sys_path: Iterable[str] | None = None,
                 start_timeout: float = 300.0, threads_per_interpreter: int | None = None,
                 teardown: str = "finalize") -> None:
        if threads_per_interpreter is not None and (
                isinstance(threads_per_interpreter, bool) or not isinstance(threads_per_interpreter, int)
                or threads_per_interpreter < 0):
            raise ValueError(f"threads_per_interpreter must be an integer >= 0 or None "
                             f"(got {threads_per_interpreter!r})")
        path = checked_start(n, teardown, libpython)
        refused = limits.too_many(n)
        if refused:
            raise refused
        self.n = n
        self.timeout = timeout
        self.libpython = path
        self._module = _interpkit
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
        self._start_serving()
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

    # ------------------------------------------------------------------ teardown (protocol.RuntimeTeardown)

    def _torn_down(self, count: int) -> None:
        _live(-count)

    def _release(self, native) -> None:
        native.close(0.0)

    def __repr__(self) -> str:
        state = "closed" if self._native is None else f"{len(self.live_indices())} live"
        return f"<Runtime n={self.n} {state} libpython={self.libpython.name}>"
