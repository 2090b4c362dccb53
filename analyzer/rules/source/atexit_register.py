"""IK405: an atexit callback registered from model code.

## What it does
Finds `atexit.register(...)` calls and `@atexit.register` decorators, under any alias.

## Why is this bad?
`atexit` callbacks belong to the interpreter that registered them and run when that
interpreter is finalized, not when the process exits. A namespaces runtime may never
finalize an interpreter, or finalize it while other interpreters still use the files,
sockets or native handles the callback closes; with torch loaded, teardown ordering already
decides whether the process exits at all (docs/facts.md fact 7).

## Example
```python
import atexit
atexit.register(cache.flush)
```

## Use instead
Give the model an explicit `close()` that the serving process calls, or use a context
manager around the work.

## References
- https://docs.python.org/3/library/atexit.html
"""
from __future__ import annotations

import ast
from pathlib import Path

import libcst as cst

from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

RULE = Rule(
    code="IK405",
    name="atexit-register",
    title="atexit callback registered from model code",
    severity=Severity.WARNING,
    backends=ALL_BACKENDS,
    verdicts={b: Verdict.UNKNOWN for b in Backend},
    fix="expose an explicit close() for the serving process to call",
    doc=__doc__,
)

TRIGGER = r"atexit"

REGISTER = frozenset({"atexit.register"})


class AtexitRegisterCheck:
    """What IK405 looks for in calls, written once for both trees; decorators differ by tree."""
    RULE = RULE

    def visit_Call(self, node) -> None:
        if self.matched_name(node.func, REGISTER):
            self.report(node, "`atexit.register` callback runs at interpreter finalization, not process exit")


class AtexitRegister(AtexitRegisterCheck, SourceRule):
    """IK405 on LibCST's tree (the reference; files the ast pass cannot decide)."""

    def visit_Decorator(self, node: cst.Decorator) -> None:
        if not isinstance(node.decorator, cst.Call) and self.matched_name(node.decorator, REGISTER):
            self.report(node, "`@atexit.register` callback runs at interpreter finalization, not process exit")


class AtexitRegisterAst(AtexitRegisterCheck, ast_pass.AstRule):
    """IK405 on CPython's ast (the scan's fast path): decorators hang off the def."""

    def visit_FunctionDef(self, node) -> None:
        for decorator in node.decorator_list:
            if not isinstance(decorator, ast.Call) and self.matched_name(decorator, REGISTER):
                self.report(ast_pass.decorator_position(self.facts, decorator),
                            "`@atexit.register` callback runs at interpreter finalization, not process exit")

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_ClassDef = visit_FunctionDef


VISITOR = AtexitRegister
AST_VISITOR = AtexitRegisterAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = REGISTER

VALID = [
    "import atexit\natexit.unregister(print)\n",
    "def register(f):\n    return f\nregister(print)\n",
]
INVALID = [
    "import atexit\natexit.register(print)  # bad\n",
    "from atexit import register as on_exit\non_exit(print)  # bad\n",
    "import atexit as ae\n@ae.register  # bad\ndef bye():\n    pass\n",
    "import atexit\natexit.register(print)  # interpkit: ignore\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
