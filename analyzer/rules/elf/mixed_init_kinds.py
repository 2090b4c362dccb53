"""One binary uses both single-phase and multi-phase initialization.

## What it does
Flags a binary that imports both `PyModule_Create2` and `PyModuleDef_Init`, or whose
several `PyInit_*` functions use different init kinds.

## Why is this bad?
Each `PyInit_*` is judged on its own, but when the init function delegates to helpers the
analyzer cannot attribute the two APIs to a particular module: one module of the binary may
be refused by an own-GIL subinterpreter while another imports fine.

## Example
```c
PyMODINIT_FUNC PyInit_a(void) { return PyModuleDef_Init(&a_def); }
PyMODINIT_FUNC PyInit_b(void) { return PyModule_Create(&b_def); }
```

## Use instead
Port every module in the binary to multi-phase init.

## References
- PEP 489
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK104",
    name="mixed-init-kinds",
    title="binary mixes single-phase and multi-phase init",
    severity=Severity.WARNING,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.UNKNOWN},
    fix="port every module in the binary to multi-phase init",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    kinds = {i.kind.value for i in facts.init.inits} - {"unknown"}
    if not facts.init.inits:
        return
    if len(kinds) > 1:
        yield RULE.finding(facts.path, "the binary's `PyInit_*` functions use both single-phase and multi-phase init",
                           data={"init_kinds": sorted(kinds)})
    elif facts.init.imports_single_phase and facts.init.imports_multi_phase:
        yield RULE.finding(facts.path, "the binary imports both `PyModule_Create2` and `PyModuleDef_Init`",
                           data={"symbols": ["PyModuleDef_Init", "PyModule_Create2"]})
