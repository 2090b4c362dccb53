"""Binary takes its `Py*` symbols from whatever libpython is global.

## What it does
Flags binaries that import `Py*` symbols but have no `DT_NEEDED` on a libpython, the
normal manylinux shape: the symbols resolve from the interpreter already in the global
lookup scope.

## Why is this bad?
The copies runtime loads each interpreter's renamed libpython `RTLD_LOCAL`, so no copy is
in the global scope: the extension either fails to resolve `Py*` or binds to the one
libpython that is global, the "mismatches in the tables". Relinking the extension to its
interpreter's copy (adding a `DT_NEEDED`, loaded `RTLD_DEEPBIND`) fixes it, and the copies
runtime's loader does exactly that for every extension it imports (native/copies/templates.py,
checked with LD_DEBUG=bindings), so the copies verdict is ok. Namespaces and subinterpreters find the
right libpython as they are.

## Example
```
$ readelf -d spam.so | grep NEEDED     # libc.so.6 only
$ nm -D --undefined-only spam.so | grep Py
                 U PyModuleDef_Init
```

## Use instead
Nothing for namespaces or subinterpreters. For copies, let `interpkit patch` add a
`DT_NEEDED` on the interpreter's libpython copy.

## References
- docs/design.md (the copies runtime)
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.rules.elf._text import symbols_data
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK302",
    name="libpython-unlinked",
    title="Py* symbols resolve from the global scope (copies need a relink)",
    severity=Severity.INFO,
    backends=frozenset({Backend.COPIES}),
    verdicts={Backend.COPIES: Verdict.OK},   # the copies loader relinks every extension
    fix="relink to the interpreter's libpython copy (`interpkit patch`)",
    fixable=Fixable.ALWAYS,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    if facts.libpython_needed:
        return
    python_imports = sorted(n for n in facts.imports if n.startswith(("Py", "_Py")))
    if python_imports:
        yield RULE.finding(facts.path, f"imports {len(python_imports)} Py* symbols without a DT_NEEDED on libpython",
                           symbol=python_imports[0], data=symbols_data(python_imports))
