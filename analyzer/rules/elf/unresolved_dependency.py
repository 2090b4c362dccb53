"""A DT_NEEDED dependency cannot be found the way ld.so would search.

## What it does
Resolves each binary's `DT_NEEDED` closure with the loader's search order (RPATH,
LD_LIBRARY_PATH, RUNPATH with `$ORIGIN`, the wheel's `.libs` folder, ld.so.conf, system
directories, then installed packages' `lib/` folders) and flags names that are not found.

## Why is this bad?
ld.so refuses to load a binary whose DT_NEEDED it cannot find ("cannot open shared object
file"), in every backend alike: the extension cannot be imported and an op library cannot
be loaded with `torch.ops.load_library`. (torchvision's `_C.so` built for CUDA, installed
next to a CPU-only torch, needs `libtorch_cuda.so`, which is not there.) The verdict is
therefore `fail` everywhere, and the finding is an error. The search follows the binary's
own RPATH/RUNPATH (with `$ORIGIN`) and its package's bundled copies first, as the loader
does for it.

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
    severity=Severity.ERROR,
    verdicts={b: Verdict.FAIL for b in Backend},
    fix="vendor the library (auditwheel repair) or add a $ORIGIN RUNPATH",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    for soname, path in facts.closure.items():
        # libpython is whatever interpreter loads the extension: it is already in the process.
        if path is None and not soname.startswith("libpython"):
            yield RULE.finding(facts.path, f"cannot load: `{soname}` is not found (not on its RPATH/RUNPATH, in its package or on the system paths)",
                               symbol=soname, data={"library": soname})
