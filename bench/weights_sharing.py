"""What serving a model with ~400 MB of weights costs in memory: 1 vs N interpreters, N processes, N forked.

One run of this script writes a torch.package archive of a plain MLP (``--layers`` Linear
layers of ``--width`` x ``--width`` float32: 6 x 4096 gives 403 MB of weights) and serves
``--requests`` requests of it in each of these set-ups, one after the other, measuring the Pss
(docs/facts.md fact 6) of everything that serves while it is all alive:

* interpreters, weights mapped: ``interpkit run``'s default (serve/weights.py): the
  archive's storages are slices of one file mapping, the page cache's one copy shared by all;
* interpreters, weights copied: torch.package's own reading, a heap copy per interpreter
  (``--weights copied``, how `run` served before);
* N processes: N plain Python processes that each load the archive (copied) and serve;
* N forked after preload: one process loads the model (copied), serves one request, optionally
  calls ``gc.freeze()``, then forks N children that serve (the gunicorn ``--preload`` /
  Instagram practice); the parent stays alive, as a pre-fork server's master does, and counts.

The interpreters run through ``serve_package`` (the sandboxed serving child of `interpkit run`),
so their Pss is that child's; every other row is the sum of its processes' Pss. Every set-up
loads the model through serve/worker.py, with one intra-op thread per interpreter or
process, and the answers of the mapped N-interpreter run are checked against interpreter 0
alone (``check``). Target: N = 4 interpreters with mapped weights cost at most 2x one.

    python bench/weights_sharing.py [--interpreters 4] [--width 4096] [--layers 6] [--requests 16]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_MIB = 1 << 20


def pss_of(pid: int) -> int:
    """Pss of one process in bytes (smaps_rollup)."""
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss line for process {pid}")


def write_archive(out: Path, width: int, layers: int, examples: int) -> int:
    """The MLP archive; returns its weight bytes."""
    import torch

    from interpkit.serve.server import export_model

    torch.manual_seed(0)
    blocks: list = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    model = torch.nn.Sequential(*blocks).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    export_model(out, model, [torch.randn(1, width) for _ in range(examples)])
    return sum(p.numel() * p.element_size() for p in model.parameters())


# ---------------------------------------------------------------------------- the process set-ups


def _serve_in_this_process(archive: str, requests: int, weights: str) -> None:
    from interpkit.serve import worker as serve_worker

    serve_worker.load(archive, "interpkit", "model.pkl", "requests.pkl", 1, weights)
    serve_worker.serve(list(range(requests)))


def process_main(archive: str, requests: int, weights: str) -> None:
    """``--process``: load and serve, say ready, wait for stdin to close."""
    _serve_in_this_process(archive, requests, weights)
    print(json.dumps({"pids": [os.getpid()]}), flush=True)
    sys.stdin.read()


def forked_main(archive: str, requests: int, children: int, freeze: bool) -> None:
    """``--forked``: preload, fork ``children`` that serve, say ready (all pids), wait for stdin to close."""
    _serve_in_this_process(archive, 1, "copied")   # preloaded and warmed, as a pre-fork master does
    if freeze:
        # Moves every object to a permanent generation the collector never scans, so the
        # children's collections do not write to (and copy) the parent's pages.
        gc.freeze()
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(release_w)
            from interpkit.serve import worker as serve_worker

            serve_worker.serve(list(range(requests)))
            os.write(ready_w, b"r")
            os.read(release_r, 1)   # until the parent closes its end
            os._exit(0)
        pids.append(pid)
    os.close(ready_w)
    os.close(release_r)
    for _ in range(children):
        if os.read(ready_r, 1) != b"r":
            raise RuntimeError("a forked child ended before it served")
    print(json.dumps({"pids": [os.getpid(), *pids]}), flush=True)
    sys.stdin.read()
    os.close(release_w)
    for pid in pids:
        os.waitpid(pid, 0)


def measure_processes(argv_tail: list[str], copies: int) -> int:
    """Start ``copies`` script processes with ``argv_tail``; the sum of all their pids' Pss once all are ready."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    procs = [subprocess.Popen([sys.executable, __file__, *argv_tail], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(copies)]
    try:
        pids = []
        for proc in procs:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{' '.join(argv_tail[:1])} process ended before it was ready")
            pids += json.loads(line)["pids"]
        return sum(pss_of(pid) for pid in pids)
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=120)


def measure_interpreters(archive: Path, interpreters: int, requests: int, weights: str) -> tuple[int, dict]:
    from interpkit.serve.server import serve_package

    result = serve_package(archive, interpreters=interpreters, requests=requests, batch=1,
                           check=interpreters > 1 and weights == "mapped", threads_per_interpreter=1,
                           weights=weights)
    return result.memory["pss_bytes"], {"check": result.check.as_dict(), "weights": result.model.get("weights")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interpreters", "-n", type=int, default=4)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--archive", type=Path, help="serve this archive instead of writing the MLP")
    parser.add_argument("--process", nargs=3, metavar=("ARCHIVE", "REQUESTS", "WEIGHTS"), help=argparse.SUPPRESS)
    parser.add_argument("--forked", nargs=4, metavar=("ARCHIVE", "REQUESTS", "N", "FREEZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.process:
        process_main(args.process[0], int(args.process[1]), args.process[2])
        return 0
    if args.forked:
        forked_main(args.forked[0], int(args.forked[1]), int(args.forked[2]), args.forked[3] == "1")
        return 0

    n, k = args.interpreters, args.requests
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="ik-weights-") as scratch:
        archive = args.archive or Path(scratch) / "mlp.pt"
        if args.archive is None:
            weight_bytes = write_archive(archive, args.width, args.layers, examples=4)
            print(f"model: MLP {args.layers} x Linear({args.width}, {args.width}), weights {weight_bytes / _MIB:.1f} MiB, "
                  f"archive {archive.stat().st_size / _MIB:.1f} MiB; {k} requests per set-up", flush=True)
        rows: list[tuple[str, int]] = []
        checks: dict = {}
        for label, count, weights in ((f"1 interpreter, weights mapped", 1, "mapped"),
                                      (f"{n} interpreters, weights mapped", n, "mapped"),
                                      (f"1 interpreter, weights copied", 1, "copied"),
                                      (f"{n} interpreters, weights copied", n, "copied")):
            pss, facts = measure_interpreters(archive, count, k, weights)
            rows.append((label, pss))
            checks[label] = facts
            print(f"  {label:<40} {pss / _MIB:9.1f} MiB", flush=True)
        for label, tail, copies in ((f"{n} processes", ["--process", str(archive), str(k), "copied"], n),
                                    (f"{n} processes, weights mapped", ["--process", str(archive), str(k), "mapped"], n),
                                    (f"{n} forked after preload (+ parent)", ["--forked", str(archive), str(k), str(n), "0"], 1),
                                    (f"{n} forked after preload, gc.freeze()", ["--forked", str(archive), str(k), str(n), "1"], 1)):
            pss = measure_processes(tail, copies)
            rows.append((label, pss))
            print(f"  {label:<40} {pss / _MIB:9.1f} MiB", flush=True)
    table = dict(rows)
    one, many = table["1 interpreter, weights mapped"], table[f"{n} interpreters, weights mapped"]
    copied_ratio = table[f"{n} interpreters, weights copied"] / table["1 interpreter, weights copied"]
    check = checks[f"{n} interpreters, weights mapped"]
    print(f"\n{n} interpreters mapped: file-backed {check['weights']['file_backed_bytes'] / _MIB:.1f} MiB, "
          f"heap {check['weights']['heap_bytes'] / _MIB:.1f} MiB of weights per interpreter; answers vs 1 interpreter: "
          f"{'equal' if check['check']['equal'] else 'DIFFER'} ({check['check']['compared']} compared)")
    print(f"summary: {n} interpreters {many / one:.2f}x 1 interpreter with weights mapped "
          f"(target <= 2.00: {'met' if many <= 2 * one else 'missed'}; copied: {copied_ratio:.2f}x); "
          f"vs {n} processes {many / table[f'{n} processes']:.2f}x, "
          f"vs {n} forked after preload {many / table[f'{n} forked after preload (+ parent)']:.2f}x "
          f"(gc.freeze() {many / table[f'{n} forked after preload, gc.freeze()']:.2f}x); "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
