"""Throughput of a Python-bound loop: 1 vs N own-GIL subinterpreters, and N threads in one.

Prints the ratios from one run per Python (3.12 … 3.15; skipped with the reason when absent).
Usage: python bench/subinterp_scaling.py [-n N] [--loops K] [--python 3.13 ...]
"""
from __future__ import annotations

import argparse

from interpkit.core.errors import RuntimeUnavailable
from interpkit.native.subinterpreters.runtime import parallel_speedup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2, help="interpreters / threads (default: 2)")
    parser.add_argument("--loops", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--python", action="append", help="Python version or path (repeatable)")
    args = parser.parse_args()
    print(f"{'python':>8} {'1 interp s':>11} {f'{args.n} interps s':>12} {f'{args.n} threads s':>12} "
          f"{'interps x':>10} {'threads x':>10}")
    for version in args.python or ["3.12", "3.13", "3.14", "3.15"]:
        try:
            r = parallel_speedup(version, n=args.n, loops=args.loops, repeat=args.repeat)
        except RuntimeUnavailable as exc:
            print(f"{version:>8} skipped: {exc}")
            continue
        print(f"{r['python']:>8} {r['one_interpreter_s']:>11.3f} {r['n_interpreters_s']:>12.3f} "
              f"{r['n_threads_one_interpreter_s']:>12.3f} {r['speedup']:>9.2f}x {r['threads_speedup']:>9.2f}x"
              f"   (cpus: {r['cpu_count']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
