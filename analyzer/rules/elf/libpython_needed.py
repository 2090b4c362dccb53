"""Extension links a specific libpython by DT_NEEDED.

## What it does
Flags binaries with a `DT_NEEDED` entry for `libpythonX.Y.so...`; when the file name's ABI
tag (`cpython-311`) names a different version, the finding is an error.

## Why is this bad?
The loader binds the binary's `Py*` references to the library of that exact soname. The
copies runtime loads a renamed libpython per interpreter, so such an extension binds to the
original libpython instead of its interpreter's copy (docs/design.md, "mismatches in the
tables") until it is relinked; the copies runtime's loader relinks each interpreter's copy to
that interpreter's libpython (native/copies/templates.py), so the same-version case is ok there.
Namespaces load that soname inside each namespace, which is
the right copy. A version that does not match the ABI tag loads a second runtime everywhere.

## Example
```
$ readelf -d spam.cpython-311-x86_64-linux-gnu.so | grep NEEDED
 0x0000000000000001 (NEEDED)  Shared library: [libpython3.11.so.1.0]
```

## Use instead
Do not link extensions against libpython (manylinux policy), or let `interpkit patch`
relink the extension to each interpreter's copy.

## References
- PEP 513 (libpythonX.Y.so.1 must not be linked)
- https://github.com/pypa/manylinux
"""
from __future__ import annotations

import re
from typing import Iterator

from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK301",
    name="libpython-needed",
    title="binary binds to one specific libpython by DT_NEEDED",
    severity=Severity.WARNING,
    backends=frozenset({Backend.COPIES}),
    verdicts={Backend.COPIES: Verdict.OK},   # the copies loader replaces the DT_NEEDED
    fix="drop the libpython DT_NEEDED, or relink to the interpreter's copy (`interpkit patch`)",
    fixable=Fixable.ALWAYS,
    doc=__doc__,
)

_VERSION = re.compile(r"^libpython(\d+)\.(\d+)")


def check(facts) -> Iterator[Finding]:
    tag = facts.python_tag
    for soname in facts.libpython_needed:
        match = _VERSION.match(soname)
        linked = (int(match.group(1)), int(match.group(2))) if match else None
        if tag and linked and tag != linked:
            yield RULE.finding(facts.path, f"is built for Python {tag[0]}.{tag[1]} but needs `{soname}`",
                               symbol=soname, severity=Severity.ERROR, backends=ALL_BACKENDS,
                               verdicts={b: Verdict.FAIL for b in Backend},
                               data={"library": soname, "built_for": f"{tag[0]}.{tag[1]}"})
        else:
            yield RULE.finding(facts.path, f"needs `{soname}` by name, so it binds to that library rather than "
                               "an interpreter's copy", symbol=soname, data={"library": soname})
