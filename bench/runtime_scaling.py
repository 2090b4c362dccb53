"""Throughput of a Python-bound loop: 1 interpreter, 2 namespaced interpreters, 2 threads in one.

All three are measured in one run of this script on one ``native.Runtime(2)``; each figure is
the best of ``--repeat`` interleaved rounds of 2 equal tasks:

* 1 interpreter: both tasks one after the other in interpreter 0;
* 2 interpreters: one task in each, at the same time (``call_all``);
* 2 threads: both tasks on two threads of interpreter 0, sharing its GIL;
* 2 processes (ceiling): both tasks in two plain processes at once: what the machine gives now.

Throughput ratios are relative to 1 interpreter; ``cpu/wall`` is this process's CPU time over
wall time in that round (about 2 when two cores really worked at once, about 1 when a
GIL serialised the work or the machine had only one core to give). The target is 2 interpreters >= 1.8x on 2
free cores; on a shared machine the numbers are noisy, so compare within one run only.

A second section serves a Python-bound model, the example torch.package archive of
fixtures/models/make_example_package.py (a small MLP between pure-Python featurizing and
post-processing, loaded by serve/worker.py), ``--requests`` requests in calls of
``--chunk`` requests, best of ``--repeat`` interleaved rounds:

* 1 interpreter: every call into interpreter 0;
* 2 interpreters: two client threads, each calling its own interpreter;
* 2 threads, 1 interpreter: two threads inside interpreter 0 (timed there);
* 2 processes: a ``multiprocessing`` spawn pool of two, fed by two client threads.

Memory (Pss, not Rss: docs/facts.md fact 6) of the same model loaded and serving is measured by
analyzer/memory in bounded child processes: namespaces with 1 and 2 interpreters, 2 threads,
2 processes (the sum of their Pss). Targets: 2 interpreters >= 1.8x the throughput of one and
>= 1.6x that of 2 threads, and less memory than 2 processes. The last line sums everything up.

    python bench/runtime_scaling.py [--loops 3000000] [--repeat 5] [--sections spin,model,memory]
                                    [--requests 960] [--chunk 4] [--archive MODEL.pt]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_MIB = 1 << 20


def spin(loops: int) -> int:
    """The workload: pure Python, no allocation to speak of, holds the GIL throughout."""
    total = 0
    for i in range(loops):
        total += i % 7
    return total


def spin_threads(loops: int, threads: int) -> float:
    """Run ``threads`` copies of ``spin`` on threads of this interpreter; wall seconds."""
    workers = [threading.Thread(target=spin, args=(loops,)) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def _timed(action) -> tuple[float, float]:
    """(wall seconds, process CPU seconds / wall): the second is ~2 when two cores worked."""
    cpu, start = time.process_time(), time.perf_counter()
    action()
    wall = time.perf_counter() - start
    return wall, (time.process_time() - cpu) / wall


# ---------------------------------------------------------------------------- the served model


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def _shares(requests: int, workers: int) -> list[list[int]]:
    """Request indices dealt out round-robin, one list per worker."""
    return [list(range(requests))[w::workers] for w in range(workers)]


def serve_cpu(indices: list[int]) -> float:
    """Serve ``indices`` on this thread (model loaded); the thread's CPU seconds for it."""
    from interpkit.serve.worker import serve

    started = time.thread_time()
    serve(indices)
    return time.thread_time() - started


def serve_threads(requests: int, threads: int, chunk: int) -> tuple[float, float]:
    """Inside one interpreter (model loaded): serve on ``threads`` threads sharing its GIL.

    Returns (wall seconds, CPU seconds of the serving threads together).
    """
    spent: list[float] = []

    def work(indices: list[int]) -> None:
        spent.append(sum(serve_cpu(part) for part in _chunks(indices, chunk)))

    workers = [threading.Thread(target=work, args=(share,)) for share in _shares(requests, threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start, sum(spent)


def _load_in_process(archive: str) -> None:
    """multiprocessing initializer: the same loader the interpreters run."""
    from interpkit.serve.worker import load

    load(archive, "interpkit", "model.pkl", "requests.pkl", 1)


def _clients(calls) -> list:
    """Run each zero-argument callable on its own client thread; their results, or the first failure."""
    failures: list[BaseException] = []
    results: list = [None] * len(calls)

    def guarded(index: int, call) -> None:
        try:
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


def make_archive(folder: Path) -> Path:
    """The example archive, written by the fixtures script in a child (this process never imports torch)."""
    out = folder / "example_mlp.pt"
    subprocess.run([sys.executable, str(REPO_ROOT / "fixtures/models/make_example_package.py"), str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def model_rounds(runtime, archive: Path, args) -> dict[str, tuple[float, float | None, float]]:
    """Best (wall seconds, cpu/wall, serving CPU ms per request) of each configuration.

    cpu/wall is this process's CPU over wall time (None for processes: their work is not in
    this process). CPU per request is measured by the serving threads themselves
    (``time.thread_time``) in every configuration, processes included; when it stays the same
    with two serving at once, they did not slow each other down, whatever the wall clock says
    on a machine with fewer free cores than workers.
    """
    import multiprocessing

    runtime.call_all("interpkit.serve.worker:load", str(archive), "interpkit", "model.pkl", "requests.pkl", 1)
    everything = _chunks(list(range(args.requests)), args.chunk)
    halves = [_chunks(share, args.chunk) for share in _shares(args.requests, 2)]
    target = "runtime_scaling:serve_cpu"
    context = multiprocessing.get_context("spawn")   # never fork a process that holds namespaces
    with context.Pool(2, initializer=_load_in_process, initargs=(str(archive),)) as pool:
        pool.map(serve_cpu, [[0], [1]], chunksize=1)     # wait until both have loaded
        # Each action serves every request once and returns the serving threads' CPU seconds.
        actions = {
            "one": lambda: sum(runtime.call(0, target, part) for part in everything),
            "two": lambda: sum(_clients([lambda i=i: sum(runtime.call(i, target, part) for part in halves[i])
                                         for i in range(2)])),
            "threads": None,   # timed inside the interpreter: no request overhead charged
            "processes": lambda: sum(_clients([lambda i=i: sum(pool.apply(serve_cpu, (part,)) for part in halves[i])
                                               for i in range(2)])),
        }
        best: dict[str, tuple[float, float | None, float]] = {name: (float("inf"), None, 0.0) for name in actions}
        for _ in range(args.repeat):
            for name, action in actions.items():
                cpu, start = time.process_time(), time.perf_counter()
                if action is None:
                    wall, serving = runtime.call(0, "runtime_scaling:serve_threads", args.requests, 2, args.chunk)
                else:
                    serving = action()
                    wall = time.perf_counter() - start
                busy = None if name == "processes" else (time.process_time() - cpu) / wall
                measured = (wall, busy, serving * 1000.0 / args.requests)
                best[name] = min(best[name], measured, key=lambda m: m[0])
    return best


_WORKLOAD_MODULE = """\
import interpkit.serve.worker as _worker
_worker.load({archive!r}, "interpkit", "model.pkl", "requests.pkl", 1)


def serve_some():
    _worker.serve(list(range(32)))
"""


def model_memory(archive: Path, folder: Path) -> dict[str, int | str]:
    """Pss in bytes (or an error line) per configuration, measured by analyzer/memory in bounded children."""
    from interpkit.analyzer.memory.measure import Workload, measure

    (folder / "ik_bench_serving.py").write_text(_WORKLOAD_MODULE.format(archive=str(archive)))
    workload = Workload(modules=("ik_bench_serving",), sys_path=(str(folder), str(REPO_ROOT)),
                        call="ik_bench_serving:serve_some")
    samples = measure(workload, [1, 2], ["namespaces"]) + measure(workload, [2], ["threads", "processes"])
    names = {("namespaces", 1): "one", ("namespaces", 2): "two", ("threads", 2): "threads",
             ("processes", 2): "processes"}
    memory: dict[str, int | str] = {names[(s.backend, s.interpreters)]: (s.error or "failed") if s.total is None
                                    else s.total.pss for s in samples}
    # Processes need a front process that takes requests and dispatches them; with interpreters that is
    # the host itself (already in the namespaces figures). Charge the processes a Python process of the
    # same kind: the namespaces child's Pss before its runtime started.
    host = samples[0].baseline
    if host is not None and isinstance(memory.get("processes"), int):
        memory["host"] = host.pss
        memory["processes+host"] = memory["processes"] + host.pss
    return memory


def model_label(archive: Path | None) -> str:
    """What the model section serves: the archive named with --archive, else the bundled example."""
    return f"torch.package archive {archive}" if archive is not None else "example torch.package MLP"


def print_model(best: dict, memory: dict, args) -> None:
    one = best["one"][0]
    print(f"model: {model_label(args.archive)}, {args.requests} requests in calls of {args.chunk}, "
          f"best of {args.repeat}")
    print(f"{'configuration':<28}{'seconds':>10}{'req/s':>10}{'vs 1 interp':>13}{'cpu/wall':>10}"
          f"{'cpu ms/req':>12}{'Pss MiB':>10}")
    for label, key in [("1 interpreter", "one"), ("2 interpreters (namespaces)", "two"),
                       ("2 threads, 1 interpreter", "threads"), ("2 processes", "processes")]:
        seconds, busy, cpu_per_request = best[key]
        pss = memory.get(key, "-")
        pss_text = f"{pss / _MIB:>10.1f}" if isinstance(pss, int) else f"{'-':>10}"
        busy_text = f"{busy:>10.2f}" if busy is not None else f"{'-':>10}"
        print(f"{label:<28}{seconds:>10.3f}{args.requests / seconds:>10.1f}{one / seconds:>12.2f}x"
              f"{busy_text}{cpu_per_request:>12.3f}{pss_text}")
    if isinstance(memory.get("processes+host"), int):
        print(f"{'2 processes + host process':<28}{'':>57}{memory['processes+host'] / _MIB:>10.1f}")
        print(f"(Pss of the interpreters' rows includes their host process, {memory['host'] / _MIB:.1f} MiB; "
              "the processes need one too, to dispatch requests)")
    for key, value in memory.items():
        if not isinstance(value, int):
            print(f"memory of {key}: {value}")


def model_summary(best: dict, memory: dict) -> str:
    one, two, threads, processes = (best[k][0] for k in ("one", "two", "threads", "processes"))
    vs_one, vs_threads = one / two, threads / two
    text = (f"model: 2 interpreters {vs_one:.2f}x 1 interpreter (target >= 1.80: "
            f"{'met' if vs_one >= 1.8 else 'missed'}), {vs_threads:.2f}x 2 threads (target >= 1.60: "
            f"{'met' if vs_threads >= 1.6 else 'missed'}), 2 processes {one / processes:.2f}x 1 interpreter; "
            f"CPU per request {best['two'][2] / best['one'][2]:.2f}x with 2 interpreters at once")
    two_pss, processes_pss = memory.get("two"), memory.get("processes+host", memory.get("processes"))
    if isinstance(two_pss, int) and isinstance(processes_pss, int):
        with_host = " + host" if "processes+host" in memory else ""
        text += (f"; Pss 2 interpreters {two_pss / _MIB:.0f} MiB vs 2 processes{with_host} "
                 f"{processes_pss / _MIB:.0f} MiB ({two_pss / processes_pss:.2f}x, target < 1: "
                 f"{'met' if two_pss < processes_pss else 'missed'})")
    return text


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sections", default="spin,model,memory",
                        help="comma-separated: spin (pure-Python loop), model (served model throughput), "
                        "memory (Pss of the served model per configuration); default: %(default)s")
    parser.add_argument("--requests", type=int, default=960,
                        help="model requests per round (rounds under ~0.3 s are at the mercy of one scheduler blip)")
    parser.add_argument("--chunk", type=int, default=4, help="model requests per call")
    parser.add_argument("--archive", type=Path, help="torch.package archive following serve/server.py's "
                        "protocol (default: the example, built in a temporary folder)")
    args = parser.parse_args()
    sections = {name.strip() for name in args.sections.split(",") if name.strip()}
    unknown = sections - {"spin", "model", "memory"}
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(REPO_ROOT))
    from interpkit.native import Runtime

    folder = tempfile.TemporaryDirectory(prefix="interpkit-bench-")
    archive = args.archive
    if archive is None and sections & {"model", "memory"}:
        archive = make_archive(Path(folder.name))
    model_best = None

    import multiprocessing

    target = "runtime_scaling:spin"
    here = str(Path(__file__).resolve().parent)
    # The machine's ceiling: the same two tasks in two plain processes. No runtime can beat the
    # cores the machine actually gives this process at the time.
    ceiling = multiprocessing.get_context("spawn").Pool(2)
    with ceiling, Runtime(2, sys_path=[here, *sys.path]) as runtime:
        runtime.call_all(target, 1000)          # warm-up: import the module everywhere
        ceiling.map(spin, [1000, 1000], chunksize=1)
        best = {"one": (float("inf"), 0.0), "two": (float("inf"), 0.0),
                "threads": (float("inf"), 0.0), "processes": (float("inf"), 0.0)}
        actions = {
            "one": lambda: [runtime.call(0, target, args.loops) for _ in range(2)],
            "two": lambda: runtime.call_all(target, args.loops),
            "threads": lambda: runtime.call(0, "runtime_scaling:spin_threads", args.loops, 2),
            "processes": lambda: ceiling.map(spin, [args.loops, args.loops], chunksize=1),
        }
        # Interleaved rounds, best of each: a noisy neighbour then hurts all three alike.
        for _ in range(args.repeat if "spin" in sections else 0):
            for name, action in actions.items():
                best[name] = min(best[name], _timed(action))
        one, two, threads = best["one"][0], best["two"][0], best["threads"][0]
        processes = best["processes"][0]
        if "model" in sections:
            model_best = model_rounds(runtime, archive, args)
    # Measured after the runtime is closed: the children must not compete with it for the cores.
    model_pss = model_memory(archive, Path(folder.name)) if "memory" in sections else {}
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores available, load average {os.getloadavg()[0]:.2f} "
          f"(1 min), {os.getloadavg()[1]:.2f} (5 min)")
    if "spin" not in sections:
        return _finish_model(model_best, model_pss, args)
    print(f"workload: 2 tasks x {args.loops:,} loops, best of {args.repeat}, {cores} cores "
          f"available, load average {os.getloadavg()[0]:.2f}")
    print(f"{'configuration':<28}{'seconds':>10}{'tasks/s':>10}{'vs 1 interp':>13}"
          f"{'cpu/wall':>10}")
    for label, key in [("1 interpreter", "one"), ("2 interpreters (namespaces)", "two"),
                       ("2 threads, 1 interpreter", "threads"), ("2 processes (ceiling)", "processes")]:
        seconds, busy = best[key]
        # The processes' CPU is not this process's: their cpu/wall would read ~0.
        busy_text = f"{busy:>10.2f}" if key != "processes" else f"{'-':>10}"
        print(f"{label:<28}{seconds:>10.3f}{2 / seconds:>10.2f}{one / seconds:>12.2f}x{busy_text}")
    print(f"summary: 2 interpreters {one / two:.2f}x, 2 threads {one / threads:.2f}x "
          f"the throughput of 1 interpreter (target >= 1.80x for 2 interpreters); "
          f"cpu/wall {best['two'][1]:.2f} with 2 interpreters vs {best['one'][1]:.2f} with 1; "
          f"2 plain processes {one / processes:.2f}x (the machine's ceiling now)")
    spin_summary = (f"spin: 2 interpreters {one / two:.2f}x, 2 threads {one / threads:.2f}x, "
                    f"2 processes (ceiling) {one / processes:.2f}x 1 interpreter")
    return _finish_model(model_best, model_pss, args, spin_summary)


def _finish_model(best: dict | None, memory: dict, args, spin_summary: str | None = None) -> int:
    """Print the model table and the closing summary line (when a model section ran)."""
    if best is None:
        if memory:
            print("model Pss: " + ", ".join(f"{k} {v / _MIB:.1f} MiB" if isinstance(v, int) else f"{k} {v}"
                                             for k, v in memory.items()))
        return 0
    print_model(best, memory, args)
    parts = [spin_summary] if spin_summary else []
    parts.append(model_summary(best, memory))
    print(f"summary: {'; '.join(parts)}; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
