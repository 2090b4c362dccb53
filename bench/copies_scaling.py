"""Throughput of the copies runtime: N = 2 beside namespaces, threads and processes; N = 32.

Two sections, each the best of ``--repeat`` interleaved rounds, all in one run of this script:

* **N = 2**: two equal tasks of a Python-bound loop (``spin``) plus a pickle round trip (an
  extension module, ``_pickle``, loaded in each interpreter from its own copy):
  1 interpreter (both tasks in turn, copies interpreter 0), 2 copies interpreters at once,
  2 namespaced interpreters at once (``native.Runtime``), 2 threads of this interpreter
  (one GIL), 2 processes (the machine's ceiling now). Ratios are against 1 interpreter.
* **N = 32**: the same total work split into 32 tasks, one per interpreter of a
  ``CopiesRuntime(32)``, against the same total in 2 tasks on ``CopiesRuntime(2)``. On 2
  cores the target is no failure and flat throughput (ratio about 1.0: 32 interpreters cost
  no throughput beyond what 2 cores give).

``cpu/wall`` is this process's CPU time over wall time in that round (about 2 when two cores
worked at once). The load average is printed before and after: on a shared machine, compare
within one run only.

    python bench/copies_scaling.py [--loops 2000000] [--repeat 3] [--n 32]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def task(loops: int) -> int:
    """Python-bound loop, then a pickle round trip through the _pickle extension."""
    import pickle

    total = 0
    for i in range(loops):
        total += i % 7
    data = {"values": list(range(2000)), "total": total}
    for _ in range(20):
        data = pickle.loads(pickle.dumps(data))
    return data["total"]


def _timed(action) -> tuple[float, float]:
    cpu, start = time.process_time(), time.perf_counter()
    action()
    wall = time.perf_counter() - start
    return wall, (time.process_time() - cpu) / wall


def _threads(loops: int, count: int) -> None:
    workers = [threading.Thread(target=task, args=(loops,)) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


_expected: dict[int, int] = {}


def _check(results: list[int], loops: int) -> None:
    if loops not in _expected:          # once, outside the timed part of later rounds
        _expected[loops] = sum(i % 7 for i in range(loops))
    expected = _expected[loops]
    if any(r != expected for r in results):
        raise SystemExit(f"wrong answers: {results[:4]}... expected {expected}")


def section_two(args) -> dict[str, tuple[float, float]]:
    from interpkit.native import Runtime
    from interpkit.native.copies.runtime import CopiesRuntime

    target = f"{Path(__file__).stem}:task"
    paths = [str(Path(__file__).parent), *sys.path]
    best: dict[str, tuple[float, float]] = {}
    _check([], args.loops)
    try:
        namespaces = Runtime(2, sys_path=paths)
        namespaces.call_all(target, 1000)
    except Exception as exc:  # noqa: BLE001 - the comparison is skipped, with the reason
        print(f"  namespaces unavailable: {str(exc).splitlines()[0][:200]}")
        namespaces = None
    with CopiesRuntime(2, sys_path=paths) as copies, multiprocessing.get_context("spawn").Pool(2) as pool:
        copies.call_all(target, 1000), pool.map(task, [1000] * 2)
        rounds = {
            "1 interpreter": lambda: [copies.call(0, target, args.loops) for _ in range(2)],
            "2 copies interpreters": lambda: _check(copies.call_all(target, args.loops), args.loops),
            "2 threads, 1 interpreter": lambda: _threads(args.loops, 2),
            "2 processes": lambda: _check(pool.map(task, [args.loops] * 2), args.loops),
        }
        if namespaces is not None:
            rounds["2 namespaced interpreters"] = lambda: _check(namespaces.call_all(target, args.loops), args.loops)
        for _ in range(args.repeat):
            for name, action in rounds.items():
                wall, ratio = _timed(action)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, ratio)
    if namespaces is not None:
        try:
            namespaces.close()
        except Exception as exc:  # noqa: BLE001 - reported, the copies numbers stand
            print(f"  namespaces close failed: {str(exc).splitlines()[0][:200]}")
    return best


def section_many(args) -> dict[str, tuple[float, float]]:
    from interpkit.native.copies.runtime import CopiesRuntime

    target = f"{Path(__file__).stem}:task"
    paths = [str(Path(__file__).parent), *sys.path]
    total = 2 * args.loops
    best: dict[str, tuple[float, float]] = {}
    for n in (2, args.n):
        started = time.perf_counter()
        with CopiesRuntime(n, sys_path=paths) as runtime:
            start_s = time.perf_counter() - started
            runtime.call_all(target, 1000)
            share = total // n
            _check([], share)
            for _ in range(args.repeat):
                wall, ratio = _timed(lambda: _check(runtime.call_all(target, share), share))
                key = f"copies N={n}"
                if key not in best or wall < best[key][0]:
                    best[key] = (wall, ratio)
            print(f"  copies N={n}: started in {start_s:.1f} s, {len(runtime.live_indices())} live after the rounds")
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n", type=int, default=32)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")
    two = section_two(args)
    base = two["1 interpreter"][0]
    print(f"N = 2: two tasks of {args.loops} loops + 20 pickle round trips (best of {args.repeat})")
    for name, (wall, ratio) in two.items():
        print(f"  {name:28s} {wall:7.3f} s  throughput {base / wall:4.2f}x  cpu/wall {ratio:4.2f}")
    many = section_many(args)
    print(f"N = {args.n} vs N = 2: the same total work ({2 * args.loops} loops) split over N interpreters")
    for name, (wall, ratio) in many.items():
        print(f"  {name:28s} {wall:7.3f} s  cpu/wall {ratio:4.2f}")
    flat = many["copies N=2"][0] / many[f"copies N={args.n}"][0]
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"summary: copies 2 interpreters {base / two['2 copies interpreters'][0]:.2f}x one "
          f"(namespaces {base / two['2 namespaced interpreters'][0] if '2 namespaced interpreters' in two else float('nan'):.2f}x, threads "
          f"{base / two['2 threads, 1 interpreter'][0]:.2f}x, processes {base / two['2 processes'][0]:.2f}x); "
          f"N={args.n} throughput / N=2 throughput = {flat:.2f} (flat is 1.0), no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
