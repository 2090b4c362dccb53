"""Extension carries its own refusal of a second interpreter or a second import.

## What it does
Flags extensions whose binary holds the message of a guard that no slot shows:
- numpy >= 2.4: "cannot load module more than once per process" (a second import anywhere in
  the process fails: legacy subinterpreters, or importing again after `del sys.modules[...]`);
- Cython modules built without module state: "Interpreter change detected - this module can
  only be loaded into one interpreter per process." (any interpreter but the first fails);
- PyO3: "PyO3 modules do not yet support subinterpreters" (any interpreter but the first),
  and "... may only be initialized once per interpreter process" (a second initialisation).

## Why is this bad?
The slot only decides isolated (own-GIL) interpreters. Legacy subinterpreters, which share the
main GIL and accept any multi-phase module, still fail on these checks, and so does a second
import in one process for the once-per-process guard. Each copy in the `namespaces` and
`copies` backends has its own globals, so the guard does not fire there.

## Example
```c
static int exec(PyObject *m) {
    static int loaded = 0;
    if (loaded++) { PyErr_SetString(PyExc_ImportError,
        "cannot load module more than once per process"); return -1; }
    return 0;
}
```

## Use instead
Keep the state the guard protects in module state, then drop the guard; or run the module in
the `namespaces` or `copies` backend.

## Known problems
Found by the message text; a guard with a different message is not seen.

## References
- https://github.com/numpy/numpy/pull/29030
- https://cython.readthedocs.io/en/latest/src/userguide/extension_types.html#subinterpreters
- https://pyo3.rs/main/faq.html
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.elf.init_imports import Guard
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK106",
    name="interpreter-guard",
    title="extension refuses a second interpreter or a second import by its own check",
    severity=Severity.ERROR,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.FAIL},
    fix="run it in the namespaces or copies backend",
    fixable=Fixable.NONE,
    doc=__doc__,
)

# guard -> (legacy subinterpreter, second import in the same interpreter)
OUTCOMES = {
    Guard.ONCE_PER_PROCESS.value: ("fail", "fail"),
    Guard.FIRST_INTERPRETER_ONLY.value: ("fail", "ok"),
}
_WHAT = {
    Guard.ONCE_PER_PROCESS.value: "refuses to load a second time in one process",
    Guard.FIRST_INTERPRETER_ONLY.value: "refuses every interpreter but the first that imported it",
}


def check(facts) -> Iterator[Finding]:
    if not facts.is_extension:
        return
    for guard, by in facts.init_imports.guards:
        legacy, second = OUTCOMES[guard]
        yield RULE.finding(facts.path, f"{_WHAT[guard]} ({by}'s check): legacy subinterpreters {legacy}, "
                           f"a second import in one interpreter {second}", symbol=guard,
                           data={"guard": guard, "by": by, "legacy_subinterpreters": legacy, "second_import": second})
