"""Extension is built for another CPython than the in-process runtimes host.

## What it does
Flags extensions whose file name carries a CPython version tag
(`foo.cpython-314-x86_64-linux-gnu.so`) other than the CPython interpkit runs on, and gives
the `copies` backend the verdict `n/a`; the `namespaces` backend too, unless a CPython of that
version with a shared libpython is found here (`INTERPKIT_PYTHONS`, `[tool.interpkit]
interpreters`, pyenv, PATH): the namespaces runtime is then built for it and runs in a child
of that Python (`verify`, `run`), and the other rules decide its verdict.

## Why is this bad?
Both backends run interpreters of a libpython (a `dlmopen` namespace each, or a renamed copy
each) of one CPython. A module built for CPython 3.14 needs the 3.14 ABI: the copies runtime
(the running Python's libpython only) and, without a 3.14 to build it for, the namespaces
runtime cannot load it at all, so neither `ok` nor `fail` describes them. The
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

import functools
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


@functools.cache
def namespaces_python(version: tuple[int, int]) -> str | None:
    """The CPython ``version`` found here that the namespaces runtime can be built for (shared
    libpython, not free-threaded), or None; discovery runs each candidate once per process."""
    from interpkit.core.errors import RuntimeUnavailable
    from interpkit.native.pythons import python_for_abi

    try:
        return str(python_for_abi(f"cpython-{version[0]}{version[1]}-", runtime="namespaces").executable)
    except RuntimeUnavailable:
        return None


def check(facts, host: tuple[int, int] = tuple(sys.version_info[:2])) -> Iterator[Finding]:
    tag = facts.python_tag
    if not facts.is_extension or tag is None or tag == host:
        return
    data = {"built_for": f"{tag[0]}.{tag[1]}", "host": f"{host[0]}.{host[1]}"}
    python = namespaces_python(tag)
    if python is None:
        yield RULE.finding(facts.path, f"is built for CPython {tag[0]}.{tag[1]}: the namespaces and copies runtimes "
                           f"host CPython {host[0]}.{host[1]} (the Python interpkit runs on; no CPython "
                           f"{tag[0]}.{tag[1]} with a shared libpython was found here) and cannot load it",
                           symbol=f"cpython-{tag[0]}{tag[1]}", data=data)
        return
    yield RULE.finding(facts.path, f"is built for CPython {tag[0]}.{tag[1]}: the copies runtime hosts CPython "
                       f"{host[0]}.{host[1]} only and cannot load it (namespaces run it in a child of {python})",
                       symbol=f"cpython-{tag[0]}{tag[1]}", backends=frozenset({Backend.COPIES}),
                       verdicts={Backend.COPIES: Verdict.NOT_APPLICABLE}, data={**data, "namespaces_python": python})
