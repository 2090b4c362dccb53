"""Module definition declares process-global state (`m_size == -1`).

## What it does
Reads the `PyModuleDef` that `PyInit_*` passes to CPython and flags `m_size` of -1.

## Why is this bad?
`m_size = -1` is the documented way to say "this module keeps its state in C globals and
does not support sub-interpreters": CPython then copies the first module's dict into later
interpreters, so objects made by one interpreter leak into the others. The copies runtime
loads the module from a file of its own per interpreter, into that interpreter's own
libpython copy, so each has its own globals (measured: single_phase_static counts per
interpreter). Namespaces each load their own copy of the library.

## Example
```c
static PyObject *ErrorObject;   /* process-global */
static struct PyModuleDef spam_def = {PyModuleDef_HEAD_INIT, "spam", NULL, -1, methods};
```

## Use instead
```c
typedef struct { PyObject *error; } spam_state;
static struct PyModuleDef spam_def = {PyModuleDef_HEAD_INIT, "spam", NULL,
                                      sizeof(spam_state), methods, slots, traverse, clear};
```

## References
- https://docs.python.org/3/c-api/module.html#c.PyModuleDef.m_size
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK202",
    name="global-state-module-def",
    title="PyModuleDef declares global state (m_size -1)",
    severity=Severity.WARNING,
    backends=frozenset({Backend.SUBINTERPRETERS, Backend.COPIES}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.FAIL, Backend.COPIES: Verdict.OK},   # a file per interpreter
    fix="move the module's globals into module state (m_size = sizeof(state))",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    for init in facts.init.inits:
        if init.m_size == -1:
            yield RULE.finding(facts.path, f"the PyModuleDef of `{init.symbol}` has m_size -1 (state kept in C globals)",
                               symbol=init.symbol, data={"init": init.symbol})
