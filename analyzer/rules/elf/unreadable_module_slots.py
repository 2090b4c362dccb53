"""Module's init kind or declared interpreter support cannot be read from the binary.

## What it does
Flags `PyInit_*` functions whose module definition or slot table the analyzer cannot read:
the slot table is built at run time (in `.bss`), the init function only calls a helper and
the binary holds several module definitions, or the binary imports neither
`PyModule_Create2` nor `PyModuleDef_Init`.

## Why is this bad?
Whether CPython 3.12+ imports the module in an own-GIL subinterpreter depends on that slot
value. Without it the subinterpreters verdict is `unknown`, not `ok`.

## Example
```cpp
// pybind11 3.x fills its slot array inside PyInit_, at run time
PYBIND11_MODULE(example, m) { ... }
```

## Use instead
Keep the slot table a static initialised array (`static PyModuleDef_Slot slots[] = {...}`),
or confirm with `interpkit verify` which imports the module in a real subinterpreter.

## Known problems
Generators that build slots at run time always land here; `interpkit verify` answers for them.

## References
- https://docs.python.org/3/c-api/module.html#multi-phase-initialization
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK103",
    name="unreadable-module-slots",
    title="declared multi-interpreter support cannot be read from the binary",
    severity=Severity.WARNING,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.UNKNOWN},
    fix="verify the module in a real subinterpreter (`interpkit verify`)",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    for init in facts.init.inits:
        if init.kind.value == "unknown":
            yield RULE.finding(facts.path, f"cannot tell how `{init.symbol}` creates its module ({init.how})",
                               symbol=init.symbol, data={"init": init.symbol})
        elif init.kind.value == "multi-phase" and init.multiple_interpreters is None:
            declared = init.declared
            reason = declared.reason if declared is not None and declared.reason else "slot value is relocated"
            yield RULE.finding(facts.path, f"cannot read the Py_mod_multiple_interpreters slot of `{init.symbol}` ({reason})",
                               symbol=init.symbol, data={"init": init.symbol})
