"""Time to bring up the k-th interpreter with torch imported, beside starting a new process that imports torch.

Interpreter k is started while interpreters 1..k-1 stay alive (each a ``native.Runtime(1)`` of
its own, so the k-th costs one more ``dlmopen`` namespace): its start (dlmopen of libpython,
initialization, bootstrap) and its ``import torch`` are timed separately, and the process's
Pss after each step shows what one more interpreter costs (docs/facts.md fact 6: Pss, not Rss).
The reference is a fresh ``python -c "import torch"`` process, timed from this one, repeated
as often as there are interpreters and interleaved with them, best of all. Nothing asserted.

    python bench/startup.py [--interpreters 4]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_MIB = 1 << 20


def new_process_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interpreters", "-n", type=int, default=4,
                        help="how many interpreters to bring up one after another (default: %(default)s; "
                        "at most 11 without GLIBC_TUNABLES=glibc.rtld.nns=16)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from interpkit.analyzer.memory.smaps import read_rollup
    from interpkit.native import Runtime

    rows = []
    process_best = float("inf")
    runtimes = []
    baseline = read_rollup().pss
    try:
        for k in range(1, args.interpreters + 1):
            process_best = min(process_best, new_process_seconds())
            started = time.perf_counter()
            runtime = Runtime(1, sys_path=[str(REPO_ROOT), *sys.path])
            runtimes.append(runtime)
            up = time.perf_counter() - started
            started = time.perf_counter()
            runtime.run(0, "import torch")
            imported = time.perf_counter() - started
            rows.append((k, up, imported, read_rollup().pss))
    finally:
        for runtime in reversed(runtimes):
            runtime.close()
    load = os.getloadavg()
    print(f"machine: {len(os.sched_getaffinity(0))} cores available, load average {load[0]:.2f} (1 min), "
          f"{load[1]:.2f} (5 min); Python {sys.version.split()[0]}")
    print(f"{'interpreter':>11}{'start s':>10}{'import torch s':>16}{'total s':>10}{'vs process':>12}"
          f"{'Pss MiB':>10}{'+Pss MiB':>10}")
    previous = baseline
    for k, up, imported, pss in rows:
        total = up + imported
        print(f"{k:>11}{up:>10.3f}{imported:>16.3f}{total:>10.3f}{total / process_best:>11.2f}x"
              f"{pss / _MIB:>10.1f}{(pss - previous) / _MIB:>10.1f}")
        previous = pss
    print(f"{'new process':>11}{'':>10}{'':>16}{process_best:>10.3f}{1:>11.2f}x   (python -c 'import torch', best of "
          f"{len(rows)})")
    first, last = rows[0][1] + rows[0][2], rows[-1][1] + rows[-1][2]
    print(f"summary: interpreter 1 up with torch in {first:.2f} s, interpreter {rows[-1][0]} in {last:.2f} s "
          f"({last / first:.2f}x the first); a new process importing torch {process_best:.2f} s; "
          f"load average {load[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
