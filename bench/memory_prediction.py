"""How well `interpkit memory` predicts the Pss of N interpreters, and which option is cheapest, per real workload.

For each workload below that imports here, one run of `interpkit memory`'s measurement
(analyzer/memory: every sample a bounded child) at N = 1 and ``--interpreters``, for the
namespaces runtime and the peers (threads, processes, processes forked after preload with and
without gc.freeze(), subinterpreters of ``--python`` where the workload imports there). Printed
per backend: measured Pss at N, the prediction made from the N = 1 sample and the ELF files
alone (analyzer/memory/report.py ``Prediction``), the error, and the files-only static estimate's
error on the marginal cost for contrast; then the cheapest option. Target: |error| <= 10 % at
N = 4 for namespaces.

Workloads: ``torch`` (import), ``torch-mlp`` (import and a forward pass of a small MLP),
``transformers-gpt2`` (a GPT-2 from a config, forward pass) and ``torchvision-detector``
(Faster R-CNN MobileNet v3, random weights, one image); a workload whose modules are not
installed is listed as such. Put extra site folders on PYTHONPATH to reach them.

    python bench/memory_prediction.py [--interpreters 4] [--workloads torch,torch-mlp,...] [--python 3.14]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
_MIB = 1 << 20
_CALLS = "interpkit.analyzer.memory.workloads"
WORKLOADS = {
    "torch": (("torch",), None),
    "torch-mlp": (("torch",), f"{_CALLS}:torch_mlp_forward"),
    "transformers-gpt2": (("torch", "transformers"), f"{_CALLS}:transformers_gpt2_forward"),
    "torchvision-detector": (("torch", "torchvision"), f"{_CALLS}:torchvision_detector_forward"),
}
BACKENDS = ["namespaces", "threads", "processes", "forked", "forked-frozen", "subinterpreters"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interpreters", "-n", type=int, default=4)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--python", default=None, help="Python of the subinterpreters (default: 3.14, else 3.13)")
    args = parser.parse_args()

    from interpkit.analyzer.memory.estimate import collect_inputs, estimate_files
    from interpkit.analyzer.memory.measure import Workload, default_subinterpreter_python, measure
    from interpkit.analyzer.memory.report import MemoryReport

    n = args.interpreters
    python = args.python or default_subinterpreter_python()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs; "
          f"N = 1 and {n}; subinterpreters of Python {python}", flush=True)
    summaries = []
    for name in args.workloads.split(","):
        modules, call = WORKLOADS[name]
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            print(f"\n{name}: not measured ({', '.join(missing)} not installed for {sys.executable})", flush=True)
            summaries.append(f"{name}: not installed")
            continue
        workload = Workload(modules, (), call)
        estimate = estimate_files(collect_inputs([], list(modules), follow_imports=True))
        samples = measure(workload, [1, n], args.backends.split(","), subinterpreter_python=python)
        report = MemoryReport.build(workload, estimate, samples)
        print(f"\n{name}: {', '.join(modules)}{'; ' + call.rpartition(':')[2] + '()' if call else ''}")
        print(f"  {'backend':<16} {'Pss N=1':>9} {'Pss N=' + str(n):>9} {'predicted':>9} {'error':>7}  "
              f"{'files only vs marginal':>22}")
        for backend in dict.fromkeys(row.backend for row in report.rows):
            rows = {row.interpreters: row for row in report.rows if row.backend == backend}
            one, many = rows.get(1), rows.get(n)
            if many is None or many.total_pss is None:
                reason = (many.error if many else None) or (one.error if one else None) or "not measured"
                print(f"  {backend:<16} {reason[:110]}")
                continue
            files_only = f"{many.estimate_error_total * 100:+.1f}%" if many.estimate_error_total is not None else ""
            print(f"  {backend:<16} {one.total_pss / _MIB:9.1f} {many.total_pss / _MIB:9.1f} "
                  f"{many.predicted_pss / _MIB:9.1f} {many.prediction_error * 100:+6.1f}%  {files_only:>22}")
        cheapest = report.cheapest
        if cheapest is not None:
            print(f"  {cheapest.line()}")
        namespaces = next((r for r in report.rows if r.backend == "namespaces" and r.interpreters == n
                           and r.prediction_error is not None), None)
        if namespaces is not None:
            met = "met" if abs(namespaces.prediction_error) <= 0.10 else "missed"
            summaries.append(f"{name}: namespaces {namespaces.prediction_error * 100:+.1f}% ({met})"
                             + (f", cheapest {cheapest.backend}" if cheapest else ""))
        sys.stdout.flush()
    print(f"\nsummary (prediction error at N = {n}, target |error| <= 10 %): {'; '.join(summaries)}; "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
