"""IK401: a signal handler installed from model code.

## What it does
Finds calls that install process-wide signal handling: `signal.signal`, `signal.siginterrupt`,
`signal.set_wakeup_fd`, `signal.setitimer` and `signal.alarm`, however `signal` was imported.

## Why is this bad?
Signal dispositions belong to the process, not to an interpreter. CPython only lets the main
thread of the main interpreter install handlers: anywhere else `signal.signal` raises
`ValueError`, so the import fails in an isolated subinterpreter and in every interpreter a
namespaces runtime drives from its worker threads. Where it does succeed, the last interpreter
to install a handler silently takes the signal from all the others.

## Example
```python
import signal
signal.signal(signal.SIGTERM, on_term)
```

## Use instead
Let the serving process own signals; expose a `shutdown()` function it can call.

## Known problems
Calls guarded by `threading.current_thread() is threading.main_thread()` are still reported.

## References
- https://docs.python.org/3/library/signal.html#signals-and-threads
"""
from __future__ import annotations

from pathlib import Path


from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

RULE = Rule(
    code="IK401",
    name="signal-handler",
    title="signal handler installed from model code",
    severity=Severity.ERROR,
    backends=ALL_BACKENDS,
    verdicts={b: Verdict.FAIL for b in Backend},
    fix="leave signal handling to the serving process",
    doc=__doc__,
)

TRIGGER = r"signal|setitimer|alarm"

SIGNAL_CALLS = frozenset({"signal.signal", "signal.siginterrupt", "signal.set_wakeup_fd",
                          "signal.setitimer", "signal.alarm"})


class SignalHandlerCheck:
    """What IK401 looks for, written once for both trees (walk.SourceRule, ast_pass.AstRule)."""
    RULE = RULE

    def visit_Call(self, node) -> None:
        name = self.matched_name(node.func, SIGNAL_CALLS)
        if name:
            self.report(node, f"`{name}` changes process-wide signal handling (main interpreter's main thread only)", data={"call": name})


class SignalHandler(SignalHandlerCheck, SourceRule):
    """IK401 on LibCST's tree (the reference; files the ast pass cannot decide)."""


class SignalHandlerAst(SignalHandlerCheck, ast_pass.AstRule):
    """IK401 on CPython's ast (the scan's fast path)."""


VISITOR = SignalHandler
AST_VISITOR = SignalHandlerAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = SIGNAL_CALLS

VALID = [
    "import signal\nprint(signal.SIGTERM)\n",
    "def signal(x):\n    return x\nsignal(3)\n",
    "import signal\nsignal.getsignal(signal.SIGINT)\n",
]
INVALID = [
    "import signal\nsignal.signal(signal.SIGTERM, print)  # bad\n",
    "from signal import signal as on, SIGINT\non(SIGINT, print)  # bad\n",
    "import signal as s\ndef f():\n    s.alarm(3)  # bad\n",
    "import signal\nsignal.signal(signal.SIGINT, print)  # interpkit: ignore[IK401]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
