"""Worker pools lent from the rule pass to the import graph (analyzer/plumbing/workers.py), with real processes."""
from __future__ import annotations

import os

import pytest

from interpkit.analyzer.plumbing.workers import lent_workers, worker_pool


def _pid(_: object = None) -> int:
    return os.getpid()


def _die(_: object = None) -> None:
    os._exit(3)


def test_inside_the_block_the_same_workers_serve_the_next_caller_and_end_with_it():
    with lent_workers():
        first, owned = worker_pool(1)
        assert not owned
        worker = first.submit(_pid).result()
        again, owned_again = worker_pool(1)
        assert again is first and not owned_again
        assert again.submit(_pid).result() == worker != os.getpid()   # the same process, not a new one
    with pytest.raises(RuntimeError):   # shut down when the block ended
        first.submit(_pid)


def test_outside_the_block_each_caller_owns_its_pool():
    pool, owned = worker_pool(1)
    try:
        assert owned and pool.submit(_pid).result() != os.getpid()
        other, _ = worker_pool(1)
        assert other is not pool
        other.shutdown()
    finally:
        pool.shutdown()


def test_a_pool_broken_by_a_dead_worker_is_replaced():
    from concurrent.futures.process import BrokenProcessPool

    with lent_workers():
        pool, _ = worker_pool(1)
        with pytest.raises(BrokenProcessPool):
            pool.submit(_die).result()
        fresh, owned = worker_pool(1)
        assert fresh is not pool and not owned
        assert fresh.submit(_pid).result() != os.getpid()
