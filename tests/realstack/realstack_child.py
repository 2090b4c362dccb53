"""Run by the real-stack venv's python (a child of the test): serve the tier's models from N
interpreters and print one JSON object. argv: N, then "host" to compute the single-interpreter
reference in this process first (so torch is loaded in the host as well as in the interpreters).

The interpreters get one thread each (threads_per_interpreter=1) and so does the host reference:
the same reduction order everywhere, so the outputs compare bit for bit on any machine.
"""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import realstack_models as models  # noqa: E402


def main() -> None:
    n = int(sys.argv[1])
    out: dict = {"n": n}
    if "host" in sys.argv[2:]:
        import torch

        torch.set_num_threads(1)
        out["reference"] = models.run_all()
    from interpkit.native import Runtime

    with Runtime(n, sys_path=[HERE, *sys.path], timeout=1200, threads_per_interpreter=1) as rt:
        out["served"] = {name: rt.call_all("realstack_models:run", name) for name in models.MODELS}
        out["threads"] = rt.info(n - 1)["threads"]
        out["stopped"] = rt.stop(0).as_dict()
        # Interpreter 0 is gone; the last one serves every model again.
        out["after_stop"] = rt.call(n - 1, "realstack_models:run_all")
        out["live_after_stop"] = rt.live_indices()
    out["teardown"] = [record.as_dict() for record in rt.teardown]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
