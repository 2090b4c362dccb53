"""Extension module uses single-phase initialization.

## What it does
Flags `PyInit_*` functions that build their module with `PyModule_Create2` (the
`PyModule_Create` macro) instead of returning `PyModuleDef_Init(&def)`.

## Why is this bad?
A single-phase module is created once per process and its module object is copied into
later interpreters: CPython keeps the first `m_copy` of its dict and refuses to import it
in an isolated subinterpreter ("module ... does not support loading in subinterpreters").
Under the namespaces runtime every interpreter is the main interpreter of its own
libpython copy, so the module loads there.

## Example
```c
PyMODINIT_FUNC PyInit_spam(void) { return PyModule_Create(&spam_def); }
```

## Use instead
```c
static PyModuleDef_Slot spam_slots[] = {
    {Py_mod_exec, spam_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {0, NULL},
};
PyMODINIT_FUNC PyInit_spam(void) { return PyModuleDef_Init(&spam_def); }
```

## Known problems
When `PyInit_*` only calls a helper (pybind11 before 3.0, PyO3, Cython without multi-phase
init) the kind is inferred from the binary's imports; the message says so.

## References
- PEP 489 (multi-phase extension module initialization)
- https://docs.python.org/3/howto/isolating-extensions.html
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK101",
    name="single-phase-init",
    title="extension module uses single-phase init",
    severity=Severity.ERROR,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.FAIL},
    fix="port the module to multi-phase init (PyModuleDef_Init with Py_mod_exec)",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    for init in facts.init.inits:
        if init.kind.value == "single-phase":
            basis = init.how if init.proved else f"inferred: {init.how}"
            yield RULE.finding(facts.path, f"`{init.symbol}` uses single-phase init ({basis})",
                               symbol=init.symbol, data={"init": init.symbol, "proved": "yes" if init.proved else "no"})
