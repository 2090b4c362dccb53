"""Extension is built for another CPython than the in-process runtimes host.

## What it does
Flags extensions whose file name carries a CPython version tag
(`foo.cpython-314-x86_64-linux-gnu.so`) other than the CPython interpkit runs on, and gives
the `namespaces` and `copies` backends the verdict `n/a`.

## Why is this bad?
Both backends run interpreters of the running Python's own libpython (a `dlmopen` namespace
each, or a renamed copy each). A module built for CPython 3.14 needs the 3.14 ABI: those
runtimes cannot load it at all, so neither `ok` nor `fail` describes them. The
`subinterpreters` verdict still applies: it is decided by the module's declaration and
checked with a matching Python (`interpkit verify --python 3.14`).

## Example
```
site-packages/orjson/orjson.cpython-314-x86_64-linux-gnu.so   scanned by interpkit on CPython 3.11
```

## Use instead
Install interpkit on the CPython the tree is built for, or build the tree for the running one.

## Known problems
abi3 modules carry no version tag and are not flagged. Run interpkit on the target Python to
judge the other backends.

## References
- https://peps.python.org/pep-3149/
"""
from __future__ import annotations

import sys
from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK309",
    name="foreign-python-abi",
    title="extension is built for another CPython than the in-process runtimes host",
    severity=Severity.INFO,
    backends=frozenset({Backend.NAMESPACES, Backend.COPIES}),
    verdicts={Backend.NAMESPACES: Verdict.NOT_APPLICABLE, Backend.COPIES: Verdict.NOT_APPLICABLE},
    fix="run interpkit on the CPython the file is built for",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts, host: tuple[int, int] = tuple(sys.version_info[:2])) -> Iterator[Finding]:
    tag = facts.python_tag
    if not facts.is_extension or tag is None or tag == host:
        return
    yield RULE.finding(facts.path, f"is built for CPython {tag[0]}.{tag[1]}: the namespaces and copies runtimes host "
                       f"CPython {host[0]}.{host[1]} (the Python interpkit runs on) and cannot load it",
                       symbol=f"cpython-{tag[0]}{tag[1]}",
                       data={"built_for": f"{tag[0]}.{tag[1]}", "host": f"{host[0]}.{host[1]}"})
