"""Op-bound scaling on the real stack: a torchvision detector and a transformers model.

1 interpreter vs 2 namespaced interpreters vs 2 threads in one interpreter vs 2 processes, each
with the per-interpreter thread budget on (every worker's OpenMP/MKL/torch pools get
cores // workers threads) and off (every worker starts pools as large as the machine), all
measured in one run of this script, side by side. Each figure is the best of ``--repeat``
interleaved rounds of 2 equal tasks of ``--images`` inferences:

* 1 interpreter: both tasks one after the other in ``Runtime(1)`` (budget on: all the cores);
* 2 interpreters: one task in each interpreter of ``Runtime(2)``, at the same time;
* 2 threads: both tasks on two threads of one interpreter (torch releases the GIL in its ops);
* 2 processes: both tasks in a spawn pool of two plain processes.

Each (workload, budget) pair is measured in a child process of its own: glibc never gives a
namespace or its static TLS back (docs/facts.md fact 5), and a process holding the CUDA build's
libraries in three namespaces has little left for more. Ratios are throughput relative to 1
interpreter with the same budget setting. The target
(issue 13) is 2 interpreters >= the better of 2 threads and 2 processes on the detector. Models
come from random weights (seeded); nothing downloads. Needs torchvision and transformers: run by
any Python, it re-runs itself with the real-stack venv's python (fixtures/realstack, built on
first use).

    python bench/realstack_scaling.py [--workloads detector,transformer] [--images 6] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HERE = str(Path(__file__).resolve().parent)
SEED = 0
DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"
DETECTOR_IMAGE = 320
PAUSE_S = 0.3
CONFIGURATIONS = (("1 interpreter", "one"), ("2 interpreters (namespaces)", "two"),
                  ("2 threads, 1 interpreter", "threads"), ("2 processes", "processes"))

_models: dict = {}


# ---------------------------------------------------------------------------- the workloads
# Run inside interpreters and processes: stdlib at module level, torch imported on first use.


def apply_budget(threads: int) -> None:
    """A plain process's own budget (the runtime sets its interpreters'): before torch loads."""
    if threads > 0:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(threads)
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)


def load(workload: str) -> str:
    """Build the workload's model (random weights, seeded) once per interpreter or process."""
    import torch

    if workload in _models:
        return workload
    torch.manual_seed(SEED)
    if workload == "detector":
        import torchvision

        model = getattr(torchvision.models.detection, DETECTOR)(weights=None, weights_backbone=None).eval()
        generator = torch.Generator().manual_seed(SEED)
        sample = [torch.rand(3, DETECTOR_IMAGE, DETECTOR_IMAGE, generator=generator)]
        _models[workload] = (lambda: model(sample))
    elif workload == "transformer":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(n_layer=4, n_head=4, n_embd=256, vocab_size=4096, n_positions=256,
                            bos_token_id=0, eos_token_id=0)
        model = GPT2LMHeadModel(config).eval()
        ids = torch.randint(0, config.vocab_size, (2, 128), generator=torch.Generator().manual_seed(SEED))
        _models[workload] = (lambda: model(input_ids=ids).logits)
    else:
        raise ValueError(f"unknown workload {workload!r}")
    infer(workload, 1)   # warm-up: first-call allocations and kernel selection
    return workload


def infer(workload: str, count: int) -> float:
    """``count`` inferences on this thread; wall seconds."""
    import torch

    forward = _models[workload]
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(count):
            forward()
    return time.perf_counter() - start


def infer_threads(workload: str, count: int, threads: int, intra: int) -> float:
    """``threads`` Python threads of this interpreter, ``count`` inferences each; wall seconds.

    ``intra`` > 0 sizes torch's intra-op pool for the duration (the budget for 2 threads), 0
    leaves the interpreter's pool as it is.
    """
    import torch

    previous = torch.get_num_threads()
    if intra > 0:
        torch.set_num_threads(intra)
    workers = [threading.Thread(target=infer, args=(workload, count)) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    torch.set_num_threads(previous)
    return wall


def _process_init(workload: str, threads: int) -> None:
    apply_budget(threads)
    load(workload)


# ---------------------------------------------------------------------------- measuring


def _budget(on: bool, workers: int) -> int:
    return max(1, len(os.sched_getaffinity(0)) // workers) if on else 0


def measure(workload: str, budget_on: bool, args) -> dict[str, float]:
    """Best wall seconds of each configuration for 2 tasks of ``args.images`` inferences."""
    import multiprocessing

    from interpkit.native import Runtime

    count = args.images
    sys_path = [HERE, *sys.path]
    context = multiprocessing.get_context("spawn")   # never fork a process that holds namespaces
    target = "realstack_scaling:infer"
    with Runtime(1, sys_path=sys_path, threads_per_interpreter=_budget(budget_on, 1)) as one, \
            Runtime(2, sys_path=sys_path, threads_per_interpreter=_budget(budget_on, 2)) as two, \
            context.Pool(2, initializer=_process_init, initargs=(workload, _budget(budget_on, 2))) as pool:
        one.call(0, "realstack_scaling:load", workload)
        two.call_all("realstack_scaling:load", workload)
        pool.starmap(infer, [(workload, 1)] * 2, chunksize=1)   # both processes up and loaded
        actions = {
            "one": lambda: [one.call(0, target, workload, count) for _ in range(2)],
            "two": lambda: two.call_all(target, workload, count),
            "threads": lambda: one.call(0, "realstack_scaling:infer_threads", workload, count, 2,
                                        _budget(budget_on, 2)),
            "processes": lambda: pool.starmap(infer, [(workload, count)] * 2, chunksize=1),
        }
        best = {name: float("inf") for name in actions}
        order = list(actions)
        for round_ in range(args.repeat):      # interleaved: a noisy neighbour hurts all alike
            # Rotated, with a pause between configurations: an OpenMP pool spins for a while
            # after its last parallel region, on cores the next configuration wants.
            for name in order[round_ % len(order):] + order[:round_ % len(order)]:
                time.sleep(PAUSE_S)
                start = time.perf_counter()
                actions[name]()
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def report(workload: str, results: dict[bool, dict[str, float]], args) -> str:
    label = {"detector": f"{DETECTOR} {DETECTOR_IMAGE}x{DETECTOR_IMAGE}",
             "transformer": "GPT-2 4 layers, 256 wide, 2x128 tokens"}[workload]
    print(f"\n{workload}: {label}, 2 tasks x {args.images} inferences, best of {args.repeat}")
    print(f"{'configuration':<30}{'budget on s':>12}{'vs 1':>8}{'budget off s':>14}{'vs 1':>8}")
    for text, key in CONFIGURATIONS:
        on, off = results[True][key], results[False][key]
        print(f"{text:<30}{on:>12.3f}{results[True]['one'] / on:>7.2f}x{off:>14.3f}"
              f"{results[False]['one'] / off:>7.2f}x")
    on = results[True]
    better = min(on["threads"], on["processes"])
    return (f"{workload}: budget on: 2 interpreters {on['one'] / on['two']:.2f}x, 2 threads "
            f"{on['one'] / on['threads']:.2f}x, 2 processes {on['one'] / on['processes']:.2f}x 1 interpreter "
            f"(2 interpreters vs the better of threads/processes {better / on['two']:.2f}x, target >= 1: "
            f"{'met' if better / on['two'] >= 1.0 else 'missed'}); budget off: 2 interpreters "
            f"{results[False]['one'] / results[False]['two']:.2f}x")


def _reexec_in_realstack_venv() -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from fixtures.realstack import RealstackUnavailable, build

    try:
        python = build(log=lambda line: print(line, file=sys.stderr, flush=True))
    except RealstackUnavailable as exc:
        print(f"realstack_scaling: the real-stack venv is unavailable ({exc})", file=sys.stderr)
        return 2
    return subprocess.call([str(python), __file__, *sys.argv[1:]],
                           env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


def _measure_in_child(workload: str, budget_on: bool, args) -> dict[str, float]:
    argv = [sys.executable, __file__, "--images", str(args.images), "--repeat", str(args.repeat),
            "--measure", f"{workload}:{'on' if budget_on else 'off'}"]
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"realstack_scaling: measuring {workload} (budget "
                         f"{'on' if budget_on else 'off'}) failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="detector,transformer")
    parser.add_argument("--images", type=int, default=6, help="inferences per task")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--measure", help=argparse.SUPPRESS)   # WORKLOAD:on|off, in a child
    args = parser.parse_args()
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(workloads) - {"detector", "transformer"}
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    try:
        import torchvision  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return _reexec_in_realstack_venv()
    sys.path.insert(0, HERE)
    if args.measure:
        workload, _, budget = args.measure.partition(":")
        print(json.dumps(measure(workload, budget == "on", args)))
        return 0
    import importlib.metadata

    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores available, load average {os.getloadavg()[0]:.2f} (1 min), "
          f"{os.getloadavg()[1]:.2f} (5 min); torch {importlib.metadata.version('torch')}", flush=True)
    summaries = []
    for workload in workloads:
        results = {on: _measure_in_child(workload, on, args) for on in (True, False)}
        summaries.append(report(workload, results, args))
    print(f"\nsummary: {'; '.join(summaries)}; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
