"""Binary calls the `PyGILState_*` API.

## What it does
Flags binaries that import `PyGILState_Ensure`, `PyGILState_Release`, `PyGILState_Check`
or `PyGILState_GetThisThreadState`.

## Why is this bad?
The GILState API remembers one thread state per OS thread for the whole runtime, tied to
the main interpreter. A callback that calls `PyGILState_Ensure` from a thread owned by a
subinterpreter gets the main interpreter's thread state (or creates one there), so it runs
Python code in the wrong interpreter. CPython documents mixing them as unsupported.
Namespaces and copies each have their own runtime, so each keeps its own GILState table.

## Example
```c
PyGILState_STATE g = PyGILState_Ensure();
PyObject_CallNoArgs(callback);
PyGILState_Release(g);
```

## Use instead
Keep the interpreter the callback belongs to and use `PyThreadState_New(interp)` plus
`PyEval_RestoreThread` / `PyEval_SaveThread`, or (3.14+) `PyThreadState_Ensure(interp)`.

## Known problems
Importing the API does not prove it runs on a subinterpreter's thread. The finding does not
change the subinterpreters verdict, which answers whether CPython will import the module:
it will; what breaks is a callback on a thread the module created itself.

## References
- https://docs.python.org/3/c-api/init.html#bugs-and-caveats
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity
from interpkit.analyzer.registry import Fixable, Rule

from interpkit.analyzer.rules.elf._text import examples, symbols_data

RULE = Rule(
    code="IK203",
    name="gilstate-api",
    title="PyGILState_* assumes the main interpreter",
    severity=Severity.WARNING,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    # CPython still imports the module in an isolated subinterpreter: the verdict is about
    # loading, and the hazard lives only on threads a probe from Python cannot create.
    verdicts={},
    fix="acquire thread states for the module's own interpreter instead of PyGILState_Ensure",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    used = sorted(n for n in facts.imports if n.startswith("PyGILState_"))
    if used:
        yield RULE.finding(facts.path, f"calls {examples(used, 4)}, which bind to the main interpreter",
                           symbol=used[0], data=symbols_data(used))
