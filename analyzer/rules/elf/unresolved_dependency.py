"""A DT_NEEDED dependency cannot be found the way ld.so would search.

## What it does
Resolves each binary's `DT_NEEDED` closure with the loader's search order (RPATH,
LD_LIBRARY_PATH, RUNPATH with `$ORIGIN`, the wheel's `.libs` folder, ld.so.conf, system
directories, then installed packages' `lib/` folders) and flags names that are not found.

## Why is this bad?
The binary either fails to load or loads only because another module loaded that library
earlier, and the analyzer cannot see the missing library's own hazards (unique symbols,
static TLS). Every backend's verdict is therefore `unknown`.

## Example
```
$ ldd spam.so
    libfoo.so.1 => not found
```

## Use instead
Vendor the library with `auditwheel repair`, or set a RUNPATH relative to `$ORIGIN`.

## Known problems
A missing `libpythonX.Y.so` is not reported: the interpreter that imports the extension
has already loaded it (IK301 covers linking it at all). A library found only inside another package's `lib/` folder (torch's libc10.so for a torch
C++ extension) is counted as found, since that package loads it first in practice.

## References
- ld.so(8)
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK306",
    name="unresolved-dependency",
    title="a DT_NEEDED library is not found on the loader's search path",
    severity=Severity.WARNING,
    verdicts={b: Verdict.UNKNOWN for b in Backend},
    fix="vendor the library (auditwheel repair) or add a $ORIGIN RUNPATH",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    for soname, path in facts.closure.items():
        # libpython is whatever interpreter loads the extension: it is already in the process.
        if path is None and not soname.startswith("libpython"):
            yield RULE.finding(facts.path, f"cannot find `{soname}` (not on its RPATH/RUNPATH or the system paths)",
                               symbol=soname, data={"library": soname})
