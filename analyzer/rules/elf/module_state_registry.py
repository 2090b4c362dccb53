"""Binary uses `PyState_FindModule` / `PyState_AddModule`.

## What it does
Flags binaries that import `PyState_FindModule`, `PyState_AddModule` or
`PyState_RemoveModule`.

## Why is this bad?
These look a module up by its `PyModuleDef` index and only work for single-phase modules:
for a multi-phase module `PyState_FindModule` returns NULL. Code that relies on them
usually also keeps per-module objects in C globals, which an own-GIL subinterpreter cannot
share. The binary alone does not show which, so the subinterpreters verdict is `unknown`.

## Example
```c
PyObject *mod = PyState_FindModule(&spam_def);
```

## Use instead
Reach module state through the defining class or the module argument:
`PyType_GetModuleByDef(Py_TYPE(self), &spam_def)` or `PyModule_GetState(module)`.

## References
- https://docs.python.org/3/c-api/module.html#module-lookup
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

from interpkit.analyzer.rules.elf._text import examples, symbols_data

RULE = Rule(
    code="IK204",
    name="module-state-registry",
    title="PyState_FindModule/AddModule only serve single-phase modules",
    severity=Severity.INFO,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.UNKNOWN},
    fix="look module state up with PyType_GetModuleByDef or PyModule_GetState",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    used = sorted(n for n in facts.imports if n in ("PyState_FindModule", "PyState_AddModule", "PyState_RemoveModule"))
    if used:
        yield RULE.finding(facts.path, f"calls {examples(used)}", symbol=used[0], data=symbols_data(used))
