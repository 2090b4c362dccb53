"""What one sandboxed run observed: one outcome type and one status vocabulary for every command.

verify (namespaces and subinterpreters), memory, the copies probe and run all report through
``ProbeOutcome`` and ``STATUSES``; ``outcome_from_records`` turns what a sandboxed child
(``interpkit.native.sandbox``) streamed, and how it ended, into one.

Teardown is observed like any other step. The steps that tear interpreters down are
``TEARDOWN_STEPS``: ``destroy`` (one interpreter while others live), ``close`` (all of them)
and ``exit`` (the child process itself ending after its result was written). A crash, hang or
memory kill at one of them is the outcome's status like any failure, pinned on that step, and
``ProbeOutcome.teardown`` names it; ``use_status`` is what import and use alone showed, so a
report can keep "it loads and works" apart from "it cannot be torn down".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

#: ``ok``            every step passed and nothing was seen shared between interpreters
#: ``shared_state``  every step ran, but state was seen shared (for one-word reports; a probe
#:                   reports ``ok`` with ``shared_state`` naming what, ``summary`` gives the word)
#: ``import_error``  the interpreter refused or failed the import (message says why)
#: ``crash``         the child died by ``signal``; a memory-limit kill is SIGKILL, its message
#:                   says "ran out of memory (memory limit ...)"
#: ``hang``          no progress within the timeout; the child was killed
#: ``error``         anything else went wrong (a failed step, an exit without a result)
#: ``skipped``       not run (wrong ABI, not an importable name); message says why
class ObservedStatus(StrEnum):
    """What a sandboxed run observed (the list above); compares and serialises as its string."""

    OK = "ok"
    SHARED_STATE = "shared_state"
    IMPORT_ERROR = "import_error"
    CRASH = "crash"
    HANG = "hang"
    ERROR = "error"
    SKIPPED = "skipped"


STATUSES = tuple(status.value for status in ObservedStatus)
TEARDOWN_STEPS = ("destroy", "close", "exit")
_PASSED = ("ok", "shared_state")
# A Python exception line on stderr ("ImportError: ...", "OSError: ..."): the first real error
# when the process died before it could report one (e.g. an abort that follows a failed load).
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): \S")


@dataclass(frozen=True)
class ProbeOutcome:
    """The observed result of importing and using one module in N interpreters.

    ``status`` is an ``ObservedStatus`` (a plain string is taken and checked); ``steps`` lists
    what was done in order (the step a failure happened in comes last); ``shared_state`` names
    what was seen shared across interpreters (empty when nothing was).
    """

    status: ObservedStatus
    message: str = ""
    signal: str | None = None          # e.g. "SIGSEGV"; only for status == "crash"
    steps: tuple[dict, ...] = ()       # {"step": "import", "interpreter": 0, "ok": True, ...}
    shared_state: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown probe status {self.status!r}")
        object.__setattr__(self, "status", ObservedStatus(self.status))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def summary(self) -> ObservedStatus:
        """One word: the status, or ``shared_state`` for an ok run that saw shared state."""
        return ObservedStatus.SHARED_STATE if self.status == "ok" and self.shared_state else self.status

    @property
    def failed_at_teardown(self) -> bool:
        return self.teardown is not None and self.teardown["status"] not in _PASSED

    @property
    def teardown(self) -> dict | None:
        """The observed teardown: ``{"status", "step", "message", "signal"}``.

        ``status`` is ``ok`` when every teardown step passed; None when teardown was never
        reached (the run failed before it).
        """
        exit_step = next((s for s in self.steps if s.get("step") == "exit"), None)
        if exit_step is not None and exit_step.get("ok") is False:
            return {"status": exit_step.get("status", "error"), "step": "exit",
                    "message": exit_step.get("error", ""), "signal": exit_step.get("signal")}
        torn = [s for s in self.steps if s.get("step") in TEARDOWN_STEPS]
        if not torn:
            return None
        last = self.steps[-1]
        if self.status not in _PASSED and last.get("step") in TEARDOWN_STEPS \
                and last.get("ok") is not True:
            return {"status": self.status, "step": last["step"], "message": self.message,
                    "signal": self.signal, **({"interpreter": last["interpreter"]}
                                              if "interpreter" in last else {})}
        if self.status in _PASSED:
            retired = [s for s in torn if s.get("retired")]
            return {"status": "ok", "step": torn[-1]["step"], "message": "", "signal": None,
                    **({"retired": [r for s in retired for r in s["retired"]]} if retired else {})}
        return None

    @property
    def use_status(self) -> ObservedStatus:
        """What import and use showed: the status, or ``ok`` when only teardown failed."""
        return ObservedStatus.OK if self.failed_at_teardown and self.steps and \
            all(s.get("ok", True) for s in self.steps if s.get("step") not in TEARDOWN_STEPS) \
            else self.status

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


# --------------------------------------------------------------------------- from a sandbox run

def teardown_facts(records) -> dict:
    """What the runtime says it did at teardown (``Runtime.teardown`` records: finalized,
    retired and why, or lost), for the step's record; {} from a runtime that keeps none."""
    rows = [r.as_dict() if hasattr(r, "as_dict") else dict(r) for r in records or () if r is not None]
    if not rows:
        return {}
    facts: dict = {"teardown": rows}
    retired = [r["index"] for r in rows if r.get("outcome") == "retired"]
    if retired:
        facts["retired"] = retired
    lost = [r for r in rows if r.get("outcome") == "lost"]
    if lost:
        # Finalisation never finished: the interpreter's thread is left running (a hang).
        facts.update(ok=False, error="; ".join(f"interpreter {r['index']} lost at teardown"
                                               + (f" ({r['reason']})" if r.get("reason") else "")
                                               for r in lost))
    return facts


def where(step: dict | None) -> str:
    """"during import in interpreter 0", or "before the first step"."""
    if not step:
        return "before the first step"
    text = f"during {step['step']}"
    if "interpreter" in step:
        text += f" in interpreter {step['interpreter']}"
    return text


def merge_steps(records) -> list[dict]:
    """The steps a child streamed: each ``step`` record as it started, replaced by its
    ``step_done`` record (same ``seq``) once it completed."""
    steps: dict[int, dict] = {}
    for index, record in enumerate(records):
        kind = record.get("event")
        if kind not in ("step", "step_done"):
            continue
        seq = record.get("seq", index)
        if kind == "step" and seq in steps:
            continue
        steps[seq] = {k: v for k, v in record.items() if k not in ("event", "seq", "module")}
    return [steps[key] for key in sorted(steps)]


def first_exception(stderr: str) -> str:
    """The first Python exception line the child wrote on stderr, or ""."""
    for line in stderr.splitlines():
        if _EXCEPTION_LINE.match(line.strip()):
            return line.strip()[:300]
    return ""


def outcome_from_records(steps: list[dict], reported: dict | None, ending, *,
                         what: str = "probe") -> ProbeOutcome:
    """One outcome from the streamed ``steps``, the child's own ``reported`` outcome (its
    ``result`` record, if it wrote one) and how it ended (a ``sandbox.Ending``).

    What was reported or completed before the child died is kept; the first real error wins
    (a failed step's own error, not the abort that follows it); a death after the last
    completed step is pinned on that step, or on ``exit`` when the result was already out.
    """
    if ending.clean:
        if reported is not None:
            return ProbeOutcome.from_json(reported)
        return ProbeOutcome("error", f"the {what} process exited 0 without a result "
                                     f"({where(steps[-1] if steps else None)})", None, tuple(steps))
    status, sig = ending.status, ending.signal
    cause = ending.cause() if ending.start_error is None else ""
    exception = first_exception(ending.stderr_tail)
    if exception and exception in cause:
        cause = ""
    how = ending.describe()
    detail = "".join(f": {text}" for text in (cause,) if text)
    if reported is not None:
        done = ProbeOutcome.from_json(reported)
        exit_step = {"step": "exit", "ok": False, "status": status, "signal": sig,
                     "error": f"the {what} process {how} at exit{detail}"}
        steps = [*done.steps, exit_step]
        if not done.ok:     # its own error came first; the death at exit is kept as a step
            return ProbeOutcome(done.status, done.message, done.signal, tuple(steps), done.shared_state)
        return ProbeOutcome(status, f"the {what} finished, then the process {how} at exit{detail}",
                            sig, tuple(steps), done.shared_state)
    steps = [dict(step) for step in steps]
    failed = next((step for step in steps if step.get("ok") is False and step.get("error")), None)
    last = steps[-1] if steps else None
    if last is not None and "ok" not in last:
        last.update(ok=False, error=f"the {what} process {how}")
    if failed is not None:
        # The step reported its own failure, then the process died: keep the failure.
        kind = "import_error" if failed["step"] == "import" else "error"
        return ProbeOutcome(kind, failed["error"], None, tuple(steps))
    message = f"the {what} process {how} {where(last)}{detail}"
    if exception:
        message += f" (first error: {exception})"
    return ProbeOutcome(status, message, sig, tuple(steps))
