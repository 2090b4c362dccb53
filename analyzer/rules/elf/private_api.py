"""Binary calls private `_Py*` C API.

## What it does
Flags imports of CPython functions and data whose names start with `_Py`, except the few
that public macros expand to (`_Py_Dealloc`, `_Py_NoneStruct`, `_PyObject_New`, ...).

## Why is this bad?
Private API changes between minor versions and may touch process-wide runtime state that
isolated subinterpreters split up (allocators, interned strings, type caches). It does not
in itself break any backend, so it carries no verdict, but a binary built for 3.11 that
uses it is unlikely to work unchanged on the 3.13 subinterpreters runtime.

## Example
```c
PyObject *v = _PyDict_GetItem_KnownHash(d, key, hash);
```

## Use instead
The public equivalent (`PyDict_GetItemRef`), or `pythoncapi-compat` for older versions.

## References
- PEP 689 (unstable C API tier)
- https://github.com/python/pythoncapi-compat
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Finding, Severity
from interpkit.analyzer.registry import Fixable, Rule

from interpkit.analyzer.rules.elf._text import examples, plural, symbols_data

RULE = Rule(
    code="IK205",
    name="private-api",
    title="binary calls private _Py* API",
    severity=Severity.INFO,
    verdicts={},
    fix="use the public C API or pythoncapi-compat",
    fixable=Fixable.NONE,
    doc=__doc__,
)

# Names public macros and inline functions expand to; using them is not a choice the author made.
MACRO_EXPANSIONS = frozenset({
    "_Py_Dealloc", "_Py_NoneStruct", "_Py_TrueStruct", "_Py_FalseStruct", "_Py_NotImplementedStruct",
    "_Py_EllipsisObject", "_Py_IncRef", "_Py_DecRef", "_Py_RefTotal", "_Py_NegativeRefcount",
    "_PyObject_New", "_PyObject_NewVar", "_PyObject_GC_New", "_PyObject_GC_NewVar", "_Py_FatalErrorFunc",
    "_Py_BuildValue_SizeT", "_PyArg_ParseTuple_SizeT", "_PyArg_ParseTupleAndKeywords_SizeT",
    "_PyArg_Parse_SizeT", "_PyArg_VaParse_SizeT", "_Py_VaBuildValue_SizeT", "_PyLong_Zero", "_PyLong_One",
    "_Py_CheckRecursiveCall", "_Py_SetImmortal", "_PyTime_GetSystemClock",
})


def check(facts) -> Iterator[Finding]:
    used = sorted(n for n in facts.imports if n.startswith("_Py") and n not in MACRO_EXPANSIONS)
    if used:
        yield RULE.finding(facts.path, f"calls {plural(len(used), 'private function')}: {examples(used)}",
                           symbol=used[0], data=symbols_data(used))
