"""torch from PyPI's cp314 wheels in N namespaces of CPython 3.14, measured once: import time,
Pss per namespace, one small forward pass answered alike in each, and how each is torn down.

Usage: python bench/py314_torch.py [-n 2] [--python 3.14]
(torch and its dependencies from the cp314 wheel cache of fixtures/pythons.py: several GB, the
CUDA build, run on CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import json, os, sys, time
job = json.loads(sys.argv[1])
def pss_kib():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
from interpkit.native.namespaces.build import activate
activate(job["extension"])
from interpkit.native import Runtime
out = {"python": sys.version.split()[0], "load_before": os.getloadavg()}
before = pss_kib(); t = time.perf_counter()
rt = Runtime(job["n"], libpython=job["libpython"], sys_path=[job["wheels"]], timeout=900)
out["start_s"] = time.perf_counter() - t
imports = []
for i in range(job["n"]):
    t = time.perf_counter()
    rt.run(i, "import torch\ntorch.manual_seed(0)\nmodel = torch.nn.Linear(64, 8)\nx = torch.ones(4, 64)")
    imports.append(time.perf_counter() - t)
out["import_s"] = imports
out["pss_per_namespace_kib"] = (pss_kib() - before) / job["n"]
out["torch"] = rt.eval(0, "str(torch.__version__)")
out["answers"] = [rt.eval(i, "round(float(model(x).sum()), 6)") for i in range(job["n"])]
rt.close()
out["teardown"] = [r.outcome for r in rt.teardown]
# The comparison: one process of the same Python importing torch (after the namespaces, so
# both read the files from a warm page cache).
import subprocess
code = ("import time; t = time.perf_counter(); import torch; d = time.perf_counter() - t; "
        "print(d, [l for l in open('/proc/self/smaps_rollup') if l.startswith('Pss:')][0].split()[1])")
done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                      env=dict(os.environ, PYTHONPATH=job["wheels"]), check=True)
seconds, pss = done.stdout.split()
out["process_import_s"], out["process_pss_kib"] = float(seconds), int(pss)
out["load_after"] = os.getloadavg()
print(json.dumps(out))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2)
    parser.add_argument("--python", default="3.14")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from fixtures.pythons import wheels_for
    from interpkit.native.pythons import find_python
    from interpkit.native.namespaces.build import namespaces_runtime_for

    info = find_python(args.python)
    runtime = namespaces_runtime_for(info)
    wheels = wheels_for(info.short_version, ["torch"])
    job = {"n": args.n, "wheels": str(wheels), "extension": str(runtime.extension), "libpython": info.libpython}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GLIBC_TUNABLES": "glibc.rtld.nns=16"}
    done = subprocess.run([*runtime.command(), "-c", CHILD, json.dumps(job)], capture_output=True, text=True,
                          env=env, timeout=3600)
    if done.returncode != 0:
        print(f"child exited {done.returncode}: {done.stderr[-3000:]}", file=sys.stderr)
        return 1
    r = json.loads(done.stdout.strip().splitlines()[-1])
    load = lambda values: " ".join(f"{v:.2f}" for v in values)
    print(f"## torch {r['torch']} in {args.n} namespaces of CPython {r['python']}; load average "
          f"{load(r['load_before'])} before, {load(r['load_after'])} after")
    print(f"start {r['start_s']:.2f} s; import torch per namespace: "
          f"{', '.join(f'{s:.2f} s' for s in r['import_s'])}; Pss per namespace {r['pss_per_namespace_kib'] / 1024:.1f} MiB")
    print(f"Linear(64, 8) on ones(4, 64), seed 0, sum per namespace: {r['answers']}; teardown: {', '.join(r['teardown'])}")
    print(f"a process of the same Python: import torch {r['process_import_s']:.2f} s, "
          f"Pss {r['process_pss_kib'] / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
