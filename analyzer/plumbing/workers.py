"""Work off the main thread: worker processes lent from one part of a scan to the next, and
one function's answer computed on a thread (Background).

The rule pass and the import graph's reader both parse on every core in spawned processes, one
after the other. Spawning costs each worker ~0.5 CPU-s of imports (interpkit, the rules,
LibCST) and the scan a pause while they start, so inside `lent_workers()` the first pool asked
for is kept and handed to the next caller that asks for as many workers; it is shut down when
the block ends. Outside the block every caller gets a pool of its own and shuts it down itself.

Spawn, not fork: the parent may hold threads (the export check, rich progress) or torch.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

_LENT: dict[int, object] | None = None   # inside lent_workers(): worker count -> live pool


@contextlib.contextmanager
def lent_workers() -> Iterator[None]:
    """Pools asked for inside the block are kept for the next caller and shut down at its end."""
    global _LENT
    if _LENT is not None:   # an outer block owns them
        yield
        return
    _LENT = {}
    try:
        yield
    finally:
        pools, _LENT = _LENT, None
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


def worker_pool(jobs: int):
    """(pool of `jobs` spawned workers, whether the caller must shut it down). Raises what
    ProcessPoolExecutor raises where processes cannot be started (OSError, ValueError...)."""
    import concurrent.futures
    import multiprocessing

    if _LENT is not None:
        pool = _LENT.get(jobs)
        if pool is not None and not getattr(pool, "_broken", False):   # a dead worker breaks the pool for good
            return pool, False
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    if _LENT is None:
        return pool, True
    stale = _LENT.get(jobs)
    if stale is not None:
        stale.shutdown(wait=False, cancel_futures=True)
    _LENT[jobs] = pool
    return pool, False


class Background:
    """fn()'s answer computed on a daemon thread (a search that releases the GIL, a wait on a
    child process); result() waits for it and returns it or raises what it raised. The caller
    joins it before closing what fn reads."""

    def __init__(self, fn: Callable[[], object], name: str = "interpkit-background") -> None:
        self._fn = fn
        self._value: object = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = threading.Thread(target=self._run, name=name, daemon=True)
        try:
            self._thread.start()
        except RuntimeError:   # no thread to be had (a process at its limit): the answer, made here
            self._thread = None
            self._run()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to result()
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def result(self):
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value
