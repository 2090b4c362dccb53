"""What one sandboxed probe of an extension observed, shared by every runtime backend."""
from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("ok", "import_error", "crash", "hang", "error")


@dataclass(frozen=True)
class ProbeOutcome:
    """The observed result of importing and using one module in N interpreters.

    ``status`` is one of ``STATUSES``: ``import_error`` means the interpreter refused or
    failed the import (message says why), ``crash`` that the child died by ``signal``,
    ``hang`` that it ran past its timeout, ``error`` anything else that went wrong.
    ``steps`` lists what was done in order; ``shared_state`` names what was seen shared
    across interpreters (empty when nothing was).
    """

    status: str
    message: str = ""
    signal: str | None = None          # e.g. "SIGSEGV"; only for status == "crash"
    steps: tuple[dict, ...] = ()       # {"step": "import", "interpreter": 0, "ok": True, ...}
    shared_state: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown probe status {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "message": self.message,
            "signal": self.signal,
            "steps": [dict(step) for step in self.steps],
            "shared_state": list(self.shared_state),
        }

    @classmethod
    def from_json(cls, data: dict) -> "ProbeOutcome":
        return cls(status=data["status"], message=data.get("message", ""),
                   signal=data.get("signal"), steps=tuple(data.get("steps", ())),
                   shared_state=tuple(data.get("shared_state", ())))


#: A hung child whose address space reached this share of its limit ran out of memory: its
#: allocations now fail, and what it does next (retry, wait on a lock it cannot take) is moot.
OUT_OF_MEMORY_SHARE = 0.9


def out_of_memory(pid: int, memory_limit_mb: int | None) -> str | None:
    """Why the live process ``pid`` counts as out of memory under ``memory_limit_mb``, or None.

    Read before the process is killed: a dead one no longer has a /proc status to read.
    """
    if not memory_limit_mb:
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            peak_kb = next((int(line.split()[1]) for line in fh if line.startswith("VmPeak:")), 0)
    except (OSError, ValueError, IndexError):
        return None
    if peak_kb < OUT_OF_MEMORY_SHARE * memory_limit_mb * 1024:
        return None
    return f"ran out of memory (address space reached {peak_kb // 1024} MiB of its {memory_limit_mb} MiB limit)"
