"""The contract every in-process runtime keeps, and the teardown half of it, written once.

``InProcessRuntime`` is what a caller may rely on whichever runtime it holds (the namespaces
runtime, ``interpkit.native.Runtime``; the copies runtime, ``CopiesRuntime``; a runtime for
another Python plugs in by providing the same): start with ``Runtime(n, timeout=...,
sys_path=..., threads_per_interpreter=..., teardown="finalize"|"retire")``, which raises
``RuntimeStartError`` (or a subclass naming the limit hit, e.g. ``NamespaceLimitError``) when
the interpreters cannot all start; requests (``run``/``eval``/``call``/``call_all``/``map``/
``submit``, from ``requests.InterpreterRequests``) that raise ``RemoteError`` for the
interpreter's own exception, ``InterpreterTimeout`` past the timeout and ``InterpreterClosed``
for a stopped, lost or closed interpreter; ``stop(i)`` and ``close()`` that return
``TeardownRecord`` values, and ``teardown``, the records so far.

``RuntimeTeardown`` is that stop/close, shared: both C runtimes end an interpreter through the
same worker core (native/core/worker.c), finalized on its own thread, or retired (parked,
never finalized) when asked to or when finalizing would hang, or lost; the records say which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from interpkit.native.errors import InterpreterClosed, InterpreterTimeout, RemoteError, RuntimeStartError

TEARDOWN_POLICIES = ("finalize", "retire")


def checked_start(n: int, teardown: str, libpython) -> "Path":
    """What every runtime checks before it starts anything, with the same errors: at least one
    interpreter, a known teardown policy, a usable shared libpython (default: the running
    Python's). Returns the libpython's path."""
    from pathlib import Path

    from interpkit.native import limits

    if n < 1:
        raise ValueError(f"cannot start {n} interpreters (need at least 1)")
    if teardown not in TEARDOWN_POLICIES:
        raise ValueError(f"teardown must be one of {', '.join(TEARDOWN_POLICIES)} (got {teardown!r})")
    path = Path(libpython) if libpython is not None else limits.find_libpython()
    reason = limits.check_libpython(path)
    if reason:
        raise RuntimeStartError(f"cannot use {path} as libpython ({reason})")
    return path


@dataclass(frozen=True)
class LoadedObject:
    """One object an interpreter has loaded: its path, load base and link-map namespace."""

    path: str
    base: int
    namespace: int


@dataclass(frozen=True)
class TeardownRecord:
    """What happened to one interpreter at teardown (``runtime.teardown``).

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


@runtime_checkable
class InProcessRuntime(Protocol):
    """N interpreters in this process behind one API (see the module doc for the semantics)."""

    backend: str
    n: int
    timeout: float | None
    threads_per_interpreter: int | None
    teardown_policy: str

    def run(self, index: int, source: str, *, timeout: float | None = None) -> None: ...
    def eval(self, index: int, expression: str, *, timeout: float | None = None) -> Any: ...
    def call(self, index: int, target: str, /, *args: Any, **kwargs: Any) -> Any: ...
    def call_all(self, target: str, /, *args: Any, **kwargs: Any) -> list[Any]: ...
    def map(self, target: str, iterable, *, star: bool = False) -> list[Any]: ...
    def submit(self, target: str, /, *args: Any, **kwargs: Any) -> Any: ...
    def alive(self, index: int) -> bool: ...
    def live_indices(self) -> list[int]: ...
    def namespace_libs(self, index: int) -> list[LoadedObject]: ...
    def stop(self, index: int, timeout: float | None = None, *,
             finalize: bool | None = None) -> TeardownRecord | None: ...
    def close(self, timeout: float | None = None) -> tuple[TeardownRecord, ...]: ...

    @property
    def teardown(self) -> tuple[TeardownRecord, ...]: ...


class RuntimeTeardown:
    """``stop``, ``close``, ``teardown`` and the native-error mapping of an in-process runtime.

    The runtime provides ``n``, ``teardown_policy``, ``_module`` (its C binding: ``NativeError``
    and the ``ERR_*``/``TEARDOWN_*`` constants, the same in every binding), ``_native`` (None
    once closed; else per index ``stop``/``retire``/``teardown``, and ``shutdown(timeout) ->``
    threads not joined), ``_stopped``, ``_teardown``, ``_pool``/``_broadcast``, ``_request`` and
    ``alive``; ``_torn_down(count)`` and ``_release(native)`` are its hooks.
    """

    def _torn_down(self, count: int) -> None:
        """``count`` interpreters just left service."""

    def _release(self, native) -> None:
        """Free what the runtime holds once every interpreter is torn down."""

    def _raise(self, exc: Exception, index: int) -> None:
        status, _, message = exc.args
        if status == self._module.ERR_TIMEOUT:
            raise InterpreterTimeout(message) from None
        if status == self._module.ERR_CLOSED:
            raise InterpreterClosed(message) from None
        if status == self._module.ERR_REMOTE:
            raise RemoteError(index, "InternalError", message, "") from None
        raise RuntimeStartError(message) from None

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
        module = self._module
        state, rc, seconds = self._native.teardown(index)
        if state == module.TEARDOWN_FINALIZED:
            record = TeardownRecord(index, "finalized",
                                    "" if rc == 0 else "Py_FinalizeEx returned -1 (an error while "
                                                       "flushing or running atexit handlers)", rc, seconds)
        elif state == module.TEARDOWN_RETIRED:
            record = TeardownRecord(index, "retired", reason or "retired on request")
        elif state == module.TEARDOWN_LOST:
            record = TeardownRecord(index, "lost", "a request never came back (blocked in C with "
                                                   "the GIL held); its thread is left running")
        elif state == module.TEARDOWN_FINALIZING:
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
        except self._module.NativeError as exc:
            self._record(index, exc.args[2])
            self._raise(exc, index)
        finally:
            self._stopped.add(index)
            self._torn_down(1)
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
                except self._module.NativeError:
                    pass                      # lost: recorded below
        leaked = native.shutdown(timeout or 0.0)
        for index in remaining:
            self._record(index, reasons[index])
        self._stopped.update(remaining)
        self._native = None
        self._release(native)
        self._torn_down(len(remaining))
        if leaked:
            raise InterpreterClosed(
                f"cannot close {leaked} interpreter(s) (a request never came back; "
                "their threads are left running)")
        return self.teardown
