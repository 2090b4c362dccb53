"""Extension readies static type objects instead of creating heap types.

## What it does
Flags extensions that import `PyType_Ready` but none of `PyType_FromSpec`,
`PyType_FromSpecWithBases`, `PyType_FromModuleAndSpec` or `PyType_FromMetaclass`: the
pattern of a `static PyTypeObject Foo_Type = {...}` readied at import. Static objects named
like a type (from `.symtab`, when present) are listed.

## Why is this bad?
A static type object is one C object in the library's data segment. Every interpreter that
imports the module shares it: its reference count, `tp_dict` and subclass list are touched
without a common lock by interpreters with their own GILs, and it holds objects created by
whichever interpreter imported first. The copies runtime loads a file of its own per
interpreter, so each has its own type object.
Under namespaces each interpreter has its own copy of the library, so it is fine there.

## Example
```c
static PyTypeObject Xxo_Type = {PyVarObject_HEAD_INIT(NULL, 0) "xx.Xxo", ...};
PyType_Ready(&Xxo_Type);
```

## Use instead
```c
static PyType_Spec Xxo_Type_spec = {...};
state->Xxo_Type = PyType_FromModuleAndSpec(module, &Xxo_Type_spec, NULL);
```

## Known problems
pybind11 builds heap types by hand and calls `PyType_Ready` on them; pybind11 binaries are
not flagged. A binary that readies one static type next to heap types is not flagged either.

## References
- `Modules/xxlimited.c` vs `Modules/xxlimited_35.c` in CPython
- https://docs.python.org/3/howto/isolating-extensions.html#heap-types
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

from interpkit.analyzer.rules.elf._text import examples, symbols_data

RULE = Rule(
    code="IK201",
    name="static-type-object",
    title="static PyTypeObject shared by every interpreter",
    severity=Severity.WARNING,
    backends=frozenset({Backend.SUBINTERPRETERS, Backend.COPIES}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.FAIL, Backend.COPIES: Verdict.OK},   # a file per interpreter
    fix="create types with PyType_FromModuleAndSpec and keep them in module state",
    fixable=Fixable.NONE,
    doc=__doc__,
)

HEAP_TYPE_CONSTRUCTORS = frozenset({"PyType_FromSpec", "PyType_FromSpecWithBases",
                                    "PyType_FromModuleAndSpec", "PyType_FromMetaclass"})


def check(facts) -> Iterator[Finding]:
    if not facts.is_extension or "PyType_Ready" not in facts.imports:
        return
    if facts.imports & HEAP_TYPE_CONSTRUCTORS or facts.generator == "pybind11":
        return
    named = f": {examples(facts.static_type_objects)}" if facts.static_type_objects else ""
    yield RULE.finding(facts.path, f"readies static type objects with `PyType_Ready` and creates no heap types{named}",
                       symbol=facts.static_type_objects[0] if facts.static_type_objects else "PyType_Ready",
                       data=symbols_data(list(facts.static_type_objects) or ["PyType_Ready"]))
