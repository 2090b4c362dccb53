"""CPython 3.14, side by side in one run: the ways to get 2 workers, and what each costs.

- pure Python (a loop): 1 vs 2 subinterpreters (concurrent.interpreters) vs 2 threads vs 2 processes
- numpy (many small array operations, so the GIL matters): 1 vs 2 namespaces (the namespaces
  runtime built for 3.14) vs 2 threads vs 2 processes; numpy refuses subinterpreters on 3.14
- start-up time and Pss per added interpreter / thread / process, for both workloads

Everything runs in one child of the 3.14 interpreter (rounds interleaved, best of each), so the
ratios share the machine's conditions; the load average is printed before and after. BLAS
threads are 1 everywhere, so 2 workers means 2 cores asked for. Throughput ratio of a
configuration = (work units done) / (wall time) over the same for 1 worker.

Usage: python bench/py314_scaling.py [--python 3.14] [--rounds 3] [--loops 2000000] [--ops 20000]
(the Python is found like `verify` finds it: INTERPKIT_PYTHONS, pyenv, PATH; numpy from the
cp314 wheel cache of fixtures/pythons.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Runs under the target Python. argv: job JSON.
CHILD = r'''
import json, os, subprocess, sys, threading, time
job = json.loads(sys.argv[1])
LOOPS, OPS, ROUNDS, WHEELS = job["loops"], job["ops"], job["rounds"], job["wheels"]
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
PURE = """
def work(count):
    total = 0
    for i in range(count):
        total += i * i % 7
    return total
"""
NUMPY = """
import numpy
def work(count):
    a = numpy.ones((16, 16)); b = numpy.eye(16) * 0.5
    for _ in range(count):
        a = a @ b + 1.0
        a /= a.max()
    return float(a.sum())
"""
def pss_kib(pid="self"):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
def timed(targets):
    threads = [threading.Thread(target=t) for t in targets]
    start = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    return time.perf_counter() - start

class Proc:
    """A process of this Python that runs `work` when told and says when done."""
    CODE = "import sys, time\n{src}\nprint('ready', flush=True)\nfor line in sys.stdin:\n    work(int(line)); print('done', flush=True)\n"
    def __init__(self, src, path):
        env = dict(os.environ, PYTHONPATH=path)
        t = time.perf_counter()
        self.p = subprocess.Popen([sys.executable, "-I" if not path else "-s", "-c", self.CODE.format(src=src)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.p.stdout.readline().strip() == "ready"
        self.startup = time.perf_counter() - t
    def go(self, n):
        self.p.stdin.write(f"{n}\n"); self.p.stdin.flush()
    def wait(self):
        assert self.p.stdout.readline().strip() == "done"
    def close(self):
        self.p.stdin.close(); self.p.wait()

def processes(src, path, count, n):
    procs = [Proc(src, path) for _ in range(n)]
    try:
        best = float("inf")
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for p in procs: p.go(count)
            for p in procs: p.wait()
            best = min(best, time.perf_counter() - start)
        return best, [p.startup for p in procs], [pss_kib(p.p.pid) for p in procs]
    finally:
        for p in procs: p.close()

out = {"python": sys.version.split()[0], "load_before": os.getloadavg(), "cpus": os.cpu_count()}

# ---- pure Python: subinterpreters, threads, processes
from concurrent import interpreters
ns = {}; exec(PURE, ns)
before = pss_kib()
t = time.perf_counter(); subs = [interpreters.create() for _ in range(2)]
for s in subs: s.exec(PURE)
out["sub_startup_s"] = (time.perf_counter() - t) / 2
out["sub_pss_kib"] = (pss_kib() - before) / 2
run_in = lambda s: (lambda: s.exec(f"work({LOOPS})"))
rows = {"1 subinterpreter": [], "2 subinterpreters": [], "1 thread": [], "2 threads": []}
subs[0].exec(f"work({LOOPS // 10})")
for _ in range(ROUNDS):
    rows["1 subinterpreter"].append(timed([run_in(subs[0])]))
    rows["2 subinterpreters"].append(timed([run_in(s) for s in subs]))
    rows["1 thread"].append(timed([lambda: ns["work"](LOOPS)]))
    rows["2 threads"].append(timed([lambda: ns["work"](LOOPS)] * 2))
for s in subs: s.close()
# What a user of InterpreterPoolExecutor gets: the same loop from an importable module (the
# pool pickles the callable by reference), 2 workers warmed up first.
from concurrent.futures import InterpreterPoolExecutor
import _ik_bench_work
with InterpreterPoolExecutor(2) as pool:
    list(pool.map(_ik_bench_work.work, [10, 10]))
    rows["InterpreterPoolExecutor(2)"] = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        list(pool.map(_ik_bench_work.work, [LOOPS, LOOPS]))
        rows["InterpreterPoolExecutor(2)"].append(time.perf_counter() - start)
    try:  # numpy in the pool: refused, and the message says how
        pool.submit(_ik_bench_work.numpy_version).result()
        out["pool_numpy"] = "loaded"
    except Exception as exc:
        # numpy's message is a page of install advice; its last line is the cause.
        lines = [line for line in str(exc).splitlines() if line.strip()]
        out["pool_numpy"] = f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]
wall, startups, pss = processes(PURE, "", LOOPS, 2)
out["pure"] = {name: min(v) for name, v in rows.items()}
out["pure"]["2 processes"] = wall
out["proc_pure_startup_s"], out["proc_pure_pss_kib"] = sum(startups) / 2, sum(pss) / 2
before = pss_kib(); t = time.perf_counter()
ths = [threading.Thread(target=time.sleep, args=(0.5,)) for _ in range(2)]
for th in ths: th.start()
out["thread_startup_s"] = (time.perf_counter() - t) / 2
out["thread_pss_kib"] = (pss_kib() - before) / 2
for th in ths: th.join()

# ---- numpy: namespaces, threads, processes
from interpkit.native.namespaces.build import activate
activate(job["extension"])
from interpkit.native import Runtime
before = pss_kib(); t = time.perf_counter()
rt = Runtime(2, libpython=job["libpython"], sys_path=[WHEELS], threads_per_interpreter=1, timeout=600)
for i in range(2): rt.run(i, NUMPY)
out["ns_startup_s"] = (time.perf_counter() - t) / 2
out["ns_pss_kib"] = (pss_kib() - before) / 2
sys.path.insert(0, WHEELS)
before_np = pss_kib(); t = time.perf_counter()
nsnp = {}; exec(NUMPY, nsnp)
out["numpy_import_in_host_s"] = time.perf_counter() - t
out["numpy_import_in_host_pss_kib"] = pss_kib() - before_np
rows = {"1 namespace": [], "2 namespaces": [], "1 thread": [], "2 threads": []}
rt.call(0, "__main__:work", OPS // 10)
for _ in range(ROUNDS):
    rows["1 namespace"].append(timed([lambda: rt.call(0, "__main__:work", OPS)]))
    rows["2 namespaces"].append(timed([lambda: rt.call(0, "__main__:work", OPS), lambda: rt.call(1, "__main__:work", OPS)]))
    rows["1 thread"].append(timed([lambda: nsnp["work"](OPS)]))
    rows["2 threads"].append(timed([lambda: nsnp["work"](OPS)] * 2))
rt.close()
out["ns_teardown"] = [r.outcome for r in rt.teardown]
wall, startups, pss = processes(NUMPY, WHEELS, OPS, 2)
out["numpy"] = {name: min(v) for name, v in rows.items()}
out["numpy"]["2 processes"] = wall
out["proc_numpy_startup_s"], out["proc_numpy_pss_kib"] = sum(startups) / 2, sum(pss) / 2
out["load_after"] = os.getloadavg()
print(json.dumps(out))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.14")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loops", type=int, default=2_000_000, help="pure-Python loop iterations per worker")
    parser.add_argument("--ops", type=int, default=20_000, help="numpy steps per worker")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from fixtures.pythons import wheels_for
    from interpkit.native.pythons import find_python
    from interpkit.native.namespaces.build import namespaces_runtime_for

    info = find_python(args.python)
    scratch = tempfile.mkdtemp(prefix="ik-bench-")
    # The pool's workers import the work by name: a module on PYTHONPATH (subinterpreters
    # take it from the environment, not from the parent's sys.path edits).
    Path(scratch, "_ik_bench_work.py").write_text(
        "def work(count):\n    total = 0\n    for i in range(count):\n        total += i * i % 7\n    return total\n"
        "def numpy_version():\n    import numpy\n    return numpy.__version__\n")
    runtime = namespaces_runtime_for(info)
    wheels = wheels_for(info.short_version, ["numpy"])
    job = {"loops": args.loops, "ops": args.ops, "rounds": args.rounds, "wheels": str(wheels),
           "extension": str(runtime.extension), "libpython": info.libpython}
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.rtld.nns=16",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), scratch, str(wheels)])}
    try:
        done = subprocess.run([*runtime.command(), "-c", CHILD, json.dumps(job)], capture_output=True, text=True,
                              env=env, timeout=3600)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    r = json.loads(done.stdout.strip().splitlines()[-1])
    load = lambda values: " ".join(f"{v:.2f}" for v in values)
    print(f"## CPython {r['python']}, {r['cpus']} CPUs; load average {load(r['load_before'])} before, "
          f"{load(r['load_after'])} after (best of {args.rounds} interleaved rounds)")
    for title, key, one, units in (("pure Python", "pure", "1 subinterpreter", args.loops),
                                   ("numpy (16x16 matmul steps)", "numpy", "1 namespace", args.ops)):
        print(f"\n{title}: {units} per worker")
        print(f"| configuration | wall s | throughput vs {one} |\n| --- | --- | --- |")
        base = r[key][one]
        for name, wall in r[key].items():
            workers = 2 if name.startswith("InterpreterPoolExecutor") else int(name.split()[0])
            print(f"| {name} | {wall:.3f} | {workers * base / wall:.2f}x |")
    mib = lambda kib: f"{kib / 1024:.1f}"
    print("\nstart-up and Pss per added worker")
    print("| worker | start-up ms | Pss MiB |\n| --- | --- | --- |")
    print(f"| subinterpreter (pure-Python workload defined) | {r['sub_startup_s'] * 1e3:.1f} | {mib(r['sub_pss_kib'])} |")
    print(f"| thread | {r['thread_startup_s'] * 1e3:.2f} | {mib(r['thread_pss_kib'])} |")
    print(f"| process (pure Python) | {r['proc_pure_startup_s'] * 1e3:.1f} | {mib(r['proc_pure_pss_kib'])} |")
    print(f"| namespace with numpy | {r['ns_startup_s'] * 1e3:.1f} | {mib(r['ns_pss_kib'])} |")
    print(f"| numpy imported in the host (what a thread adds once) | {r['numpy_import_in_host_s'] * 1e3:.1f} | "
          f"{mib(r['numpy_import_in_host_pss_kib'])} |")
    print(f"| process with numpy | {r['proc_numpy_startup_s'] * 1e3:.1f} | {mib(r['proc_numpy_pss_kib'])} |")
    print(f"\nnamespaces teardown: {', '.join(r['ns_teardown'])}")
    print(f"numpy submitted to InterpreterPoolExecutor: {r['pool_numpy']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
