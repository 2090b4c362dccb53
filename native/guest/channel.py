"""The sandboxed child's side of the harness: its job in, its records out, one step reporter.

Every child the sandbox (``interpkit.native.sandbox``) starts reads its job as the first JSON
line of stdin (``read_job``) and writes JSON-line records on the descriptor that was its stdout
(``Channel``). ``Steps`` is the one way a child reports what it does: each step is streamed
when it starts and again when it completes (``step_done``, with what it recorded: ``ok``,
``error``, ...), then one ``result`` whose ``outcome`` is a ``ProbeOutcome`` in JSON form
(``interpkit.native.sandbox.outcome``). A child that dies mid-step leaves the started step
behind, so the parent can pin the crash on it.

Standard library only: children under other Pythons (3.12+, without interpkit installed) load
this file by path.
"""
from __future__ import annotations

import json
import os
import sys
import threading


class Channel:
    """The child's end: JSON lines on the fd that was stdout at start; fd 1 then points at stderr,
    so a module that prints cannot corrupt the stream."""

    def __init__(self) -> None:
        self._stream = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def emit(self, event: str, **fields) -> None:
        line = json.dumps({"event": event, **fields}) + "\n"
        with self._lock:  # one record per line even when several threads report
            self._stream.write(line)
            self._stream.flush()


def read_job(stream=None) -> dict:
    """The job the parent wrote as the first line of stdin."""
    return json.loads((stream or sys.stdin).readline())


def no_core_dumps() -> None:
    """Crashes are expected observations here; a core file per crash would fill the disk."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Steps:
    """The one step reporter of every sandboxed child.

    ``step`` opens a step (closing the previous one) and returns its record, which the caller
    fills (``ok``, ``error``, facts); ``done`` streams the open step as completed once it says
    ``ok``; ``finish`` closes it and streams the ``result``. ``tags`` (e.g. ``module=name`` when
    one child probes several modules) go on every record.
    """

    def __init__(self, channel: Channel, **tags) -> None:
        self.channel = channel
        self.tags = tags
        self.steps: list[dict] = []
        self._open: dict | None = None

    def step(self, name: str, interpreter=None, **extra) -> dict:
        self.done()
        record = {"step": name}
        if interpreter is not None:
            record["interpreter"] = interpreter
        record.update(extra)
        self.steps.append(record)
        self.channel.emit("step", **self.tags, seq=len(self.steps), **record)
        self._open = record
        return record

    def done(self, **fields) -> None:
        """Stream the open step as completed, with ``fields`` added, once it records ``ok``."""
        if self._open is None:
            return
        self._open.update(fields)
        if "ok" in self._open:
            self.channel.emit("step_done", **self.tags, seq=len(self.steps), **self._open)
            self._open = None

    def outcome(self, status: str, message: str = "", shared=()) -> dict:
        """The ``ProbeOutcome`` JSON of the steps so far."""
        return {"status": status, "message": message, "signal": None, "steps": self.steps,
                "shared_state": sorted(shared)}

    def finish(self, status: str, message: str = "", shared=(), **extra) -> int:
        """Close the open step and stream the ``result`` (``extra`` beside the outcome); 0."""
        self.done()
        self.channel.emit("result", **self.tags, outcome=self.outcome(status, message, shared), **extra)
        return 0
