"""Teardown scenario child (any Python with torch): argv = N, host|bare, import|infer.

host: this process imports torch and runs it before the runtime starts (a host with its own
torch). import: the interpreters only import torch; infer: they also run a conv net forward,
so torch's OpenMP pool threads exist. With N > 1, interpreter 0 is stopped while the last one
keeps serving. Prints one JSON line; the exit status is the process exit after close.
"""
from __future__ import annotations

import json
import sys

SOURCE = {
    "import": "import torch\ny = 1.0\n",
    "infer": ("import torch\ntorch.manual_seed(0)\n"
              "m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),\n"
              "                        torch.nn.Linear(8 * 30 * 30, 4))\n"
              "y = m(torch.randn(2, 3, 32, 32)).sum().item()\n"),
}


def main() -> None:
    n, host, phase = int(sys.argv[1]), sys.argv[2] == "host", sys.argv[3]
    if host:
        import torch

        torch.ones(4, 4).sum()
    from interpkit.native import Runtime

    out: dict = {}
    runtime = Runtime(n, timeout=600)
    runtime.run_all(SOURCE[phase])
    out["values"] = [runtime.eval(i, "y") for i in range(n)]
    if n > 1:
        out["stopped"] = runtime.stop(0).as_dict()
        runtime.run(n - 1, SOURCE[phase])             # the last one keeps serving
        out["after_stop"] = runtime.eval(n - 1, "y")
    out["teardown"] = [record.as_dict() for record in runtime.close()]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
