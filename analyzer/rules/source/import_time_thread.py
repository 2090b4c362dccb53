"""IK408: a thread started while the module is imported.

## What it does
Finds threads started by module-level code (including class bodies): `threading.Thread(...)`
or `threading.Timer(...)` followed by `.start()` in the same statement or through a
module-level name, and `_thread.start_new_thread(...)`.

## Why is this bad?
Importing a module should not leave work running. Each interpreter that imports the model
starts its own copy of the thread; a daemon thread is refused outright by isolated
subinterpreters (`RuntimeError`), and a thread still running when its interpreter is
finalized keeps the process from exiting or crashes in teardown (docs/facts.md fact 7). Under a
namespaces runtime the thread also belongs to one namespace's libc, which matters once it
calls into another interpreter (docs/facts.md facts 2 and 4).

## Example
```python
import threading
_poller = threading.Thread(target=poll_metrics, daemon=True)
_poller.start()
```

## Use instead
Start background work from an explicit function the serving process calls, and stop it
from a matching `close()`.

## Known problems
Subclasses of `threading.Thread` and threads started inside functions that the module calls
at import time are not followed.

## References
- https://docs.python.org/3/library/threading.html
- https://peps.python.org/pep-0684/
"""
from __future__ import annotations

from pathlib import Path


from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

RULE = Rule(
    code="IK408",
    name="import-time-thread",
    title="thread started while the module is imported",
    severity=Severity.WARNING,
    backends=ALL_BACKENDS,
    verdicts={b: Verdict.UNKNOWN for b in Backend},
    fix="start background threads from an explicit function, not at import",
    doc=__doc__,
)

TRIGGER = r"Thread|Timer|start_new"

THREAD_TYPES = frozenset({"threading.Thread", "threading.Timer"})
RAW_STARTS = frozenset({"_thread.start_new_thread", "_thread.start_new"})
DAEMON_REFUSED = {Backend.NAMESPACES: Verdict.UNKNOWN, Backend.SUBINTERPRETERS: Verdict.FAIL,
                  Backend.COPIES: Verdict.UNKNOWN}


class ImportTimeThreadCheck:
    """What IK408 looks for, written once for both trees (walk.SourceRule, ast_pass.AstRule)."""
    RULE = RULE

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.thread_names: dict[str, bool] = {}   # module-level name → created as daemon

    def _thread_call(self, node) -> bool | None:
        """None if `node` does not construct a thread, else whether it is a daemon thread."""
        if self.is_call(node) and self.matched_name(node.func, THREAD_TYPES):
            return self.is_true(self.argument(node, 99, "daemon"))
        return None

    def visit_Assign(self, node) -> None:
        daemon = self._thread_call(node.value)
        if daemon is None or not self.runs_at_import(node):
            return
        for target in self.assign_targets(node):
            name = self.identifier_of(target)
            if name is not None:
                self.thread_names[name] = daemon

    def visit_Call(self, node) -> None:
        if not self.runs_at_import(node):
            return
        if self.matched_name(node.func, RAW_STARTS):
            self.report(node, "`_thread.start_new_thread` at import starts a thread in every importing interpreter")
            return
        func = node.func
        if self.attribute_of(func) != "start":
            return
        daemon = self._thread_call(func.value)
        started = self.identifier_of(func.value)
        if daemon is None and started is not None:
            daemon = self.thread_names.get(started)
        if daemon is None:
            return
        kind = "daemon thread" if daemon else "thread"
        self.report(node, f"a {kind} is started at import time, once per importing interpreter",
                    verdicts=DAEMON_REFUSED if daemon else None)


class ImportTimeThread(ImportTimeThreadCheck, SourceRule):
    """IK408 on LibCST's tree (the reference; files the ast pass cannot decide)."""


class ImportTimeThreadAst(ImportTimeThreadCheck, ast_pass.AstRule):
    """IK408 on CPython's ast (the scan's fast path)."""


VISITOR = ImportTimeThread
AST_VISITOR = ImportTimeThreadAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = THREAD_TYPES | RAW_STARTS

VALID = [
    "import threading\ndef start():\n    t = threading.Thread(target=print)\n    t.start()\n",
    "import threading\nt = threading.Thread(target=print)\n",
    "import threading\nlock = threading.Lock()\n",
    "class Job:\n    def start(self):\n        pass\nJob().start()\n",
]
INVALID = [
    "import threading\nthreading.Thread(target=print).start()  # bad\n",
    "from threading import Thread as T\n_t = T(target=print, daemon=True)\n_t.start()  # bad\n",
    "import threading as th\nif True:\n    th.Timer(5.0, print).start()  # bad\n",
    "import _thread\n_thread.start_new_thread(print, ())  # bad\n",
    "import threading\nthreading.Thread(target=print).start()  # interpkit: ignore[IK408]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
