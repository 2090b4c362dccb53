"""Assertions shared by the CPU-build (tests/runtime) and CUDA-build (tests/realstack) teardown tests."""
from __future__ import annotations

import json
from pathlib import Path

from tests.runtime.runtime_helpers import run_isolated

CHILD = Path(__file__).with_name("teardown_child.py")


def check_clean_teardown(python: str, n: int, host: str, phase: str) -> None:
    """Run the scenario in a child of ``python``: every interpreter finalized, exit status 0."""
    result = run_isolated([python, str(CHILD), str(n), host, phase], timeout=900)
    assert result.returncode == 0, (result.returncode, result.signal, result.stderr[-1500:])
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(set(out["values"])) == 1, out["values"]              # same model, same answer
    if n > 1:
        assert out["stopped"]["outcome"] == "finalized", out["stopped"]
        assert out["after_stop"] == out["values"][-1]
    assert [r["index"] for r in out["teardown"]] == list(range(n))
    assert all(r["outcome"] == "finalized" and r["finalize_rc"] == 0 for r in out["teardown"]), out["teardown"]


__all__ = ["check_clean_teardown"]
