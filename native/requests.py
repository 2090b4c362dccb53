"""The request-level API shared by every in-process runtime (namespaces, copies).

A runtime supplies the transport — ``_request(index, kind, *payload, timeout=)``, ``alive(i)``,
``n``, a ``_free`` queue of interpreter indices, ``_pool_lock`` and ``_pool``/``_broadcast``
(both None at start) — and gets run/eval/call/info, the broadcasts and the work-queue calls
here (and `with`, `len`), so the two backends cannot drift apart in what a caller sees.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from interpkit.native.errors import InterpreterClosed


class InterpreterRequests:
    POOL_PREFIX = "interpkit"   # thread names of the request pools, per backend

    def _start_serving(self) -> None:
        """Every interpreter free and none stopped; the pools start on first use."""
        self._stopped: set[int] = set()
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(self.n):
            self._free.put(index)
        self._pool: ThreadPoolExecutor | None = None
        self._broadcast: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def run(self, index: int, source: str, *, timeout: float | None = None) -> None:
        """Execute ``source`` in interpreter ``index``'s ``__main__``.

        ``timeout`` overrides the runtime's. Python code that runs past it is interrupted
        with TimeoutError and InterpreterTimeout is raised here; code blocked in C while
        holding its GIL cannot be interrupted, and its interpreter is then marked lost.
        """
        self._request(index, "run", source, timeout=timeout)

    def eval(self, index: int, expression: str, *, timeout: float | None = None) -> Any:
        """Evaluate ``expression`` in interpreter ``index``'s ``__main__``; return its value."""
        return self._request(index, "eval", expression, timeout=timeout)

    def call(self, index: int, target: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``target`` ("pkg.mod:func") in interpreter ``index``; return the result."""
        return self._request(index, "call", target, args, kwargs)

    def info(self, index: int) -> dict:
        """pid, thread ids, ``id(sys)`` and RTLD_GLOBAL loads the guard rewrote."""
        return self._request(index, "info")

    def _executor(self, broadcast: bool) -> ThreadPoolExecutor:
        # Two pools: targeted broadcasts must never queue behind "any free interpreter"
        # tasks that are themselves waiting for an interpreter.
        with self._pool_lock:
            if broadcast:
                if self._broadcast is None:
                    self._broadcast = ThreadPoolExecutor(self.n, f"{self.POOL_PREFIX}-broadcast")
                return self._broadcast
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.n, f"{self.POOL_PREFIX}-submit")
            return self._pool

    def _broadcast_request(self, method, *args: Any, **kwargs: Any) -> list[Any]:
        pool = self._executor(broadcast=True)
        futures = [pool.submit(method, index, *args, **kwargs) for index in self.live_indices()]
        return [future.result() for future in futures]

    def call_all(self, target: str, /, *args: Any, **kwargs: Any) -> list[Any]:
        """Call ``target`` in every live interpreter in parallel; results in index order."""
        return self._broadcast_request(self.call, target, *args, **kwargs)

    def run_all(self, source: str) -> None:
        """Execute ``source`` in every live interpreter in parallel."""
        self._broadcast_request(self.run, source)

    def add_sys_path(self, *directories: str | os.PathLike, first: bool = True) -> None:
        """Add directories to ``sys.path`` in every live interpreter."""
        self._broadcast_request(self._request, "sys_path", [str(Path(d)) for d in directories], first)

    def _call_any(self, target: str, args: tuple, kwargs: dict) -> Any:
        while True:
            if not self.live_indices():
                raise InterpreterClosed("cannot run request (no live interpreter)")
            try:
                index = self._free.get(timeout=0.1)
            except queue.Empty:
                continue
            if not self.alive(index):
                continue                    # stopped or lost: leaves the pool for good
            try:
                return self.call(index, target, *args, **kwargs)
            finally:
                self._free.put(index)

    def submit(self, target: str, /, *args: Any, **kwargs: Any) -> Future:
        """Queue a call of ``target`` on whichever interpreter is free next."""
        return self._executor(broadcast=False).submit(self._call_any, target, args, kwargs)

    def map(self, target: str, iterable: Iterable[Any], *, star: bool = False) -> list[Any]:
        """``[target(item) for item in iterable]`` spread over the interpreters.

        With ``star`` each item is an argument tuple. Results keep the input order; the
        first remote failure is raised after all calls finished.
        """
        futures = [self.submit(target, *(item if star else (item,))) for item in iterable]
        return [future.result() for future in futures]

    def live_indices(self) -> list[int]:
        return [index for index in range(self.n) if self.alive(index)]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n
