"""Multi-phase module does not declare per-interpreter GIL support.

## What it does
Reads the module's `m_slots` table from the binary (through its relocations) and flags a
multi-phase module whose `Py_mod_multiple_interpreters` slot is absent or is not
`Py_MOD_PER_INTERPRETER_GIL_SUPPORTED` (slot id 3, value 2).

## Why is this bad?
CPython 3.12+ checks this slot when an interpreter with its own GIL imports the module. A
missing slot means `Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED` (shared GIL only), and
`Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED` refuses every subinterpreter: either way the
import raises `ImportError` in an isolated subinterpreter (`_interpreters.create('isolated')`).
Namespaces and copies do not read the slot.

## Example
```c
static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};
```

## Use instead
```c
static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};
```
Declare it only once the module keeps all its state in module state and heap types.

## Known problems
A binary built against 3.11 headers cannot carry the slot; rebuilding for 3.12+ is needed.

## References
- PEP 684 (a per-interpreter GIL)
- https://docs.python.org/3/c-api/module.html#c.Py_mod_multiple_interpreters
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK102",
    name="missing-per-interpreter-gil-slot",
    title="multi-phase module does not declare Py_MOD_PER_INTERPRETER_GIL_SUPPORTED",
    severity=Severity.ERROR,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.FAIL},
    fix="add {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED} once the module is isolated",
    fixable=Fixable.NONE,
    doc=__doc__,
)

_WHY = {
    "absent": "its slot table has no Py_mod_multiple_interpreters slot, so CPython assumes shared-GIL support only",
    "not-supported": "its Py_mod_multiple_interpreters slot says Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED",
    "supported": "its Py_mod_multiple_interpreters slot says Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED (shared GIL only)",
}


def check(facts) -> Iterator[Finding]:
    for init in facts.init.inits:
        if init.kind.value != "multi-phase":
            continue
        declared = init.multiple_interpreters
        if declared in _WHY:
            yield RULE.finding(facts.path, f"`{init.symbol}` cannot load in an own-GIL subinterpreter ({_WHY[declared]})",
                               symbol=init.symbol, data={"init": init.symbol, "declared": declared})
        elif declared is not None and declared.startswith("unknown("):
            yield RULE.finding(facts.path, f"`{init.symbol}` declares an unknown Py_mod_multiple_interpreters value {declared[8:-1]}",
                               symbol=init.symbol, data={"init": init.symbol, "declared": declared})
