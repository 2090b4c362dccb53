"""Binary carries DT_RPATH, or RPATH/RUNPATH entries outside the package.

## What it does
Flags `DT_RPATH` (any entry) and `DT_RPATH`/`DT_RUNPATH` entries that are absolute or
relative to the working directory instead of `$ORIGIN`.

## Why is this bad?
`DT_RPATH` is searched before `LD_LIBRARY_PATH` and is inherited by every library the
binary loads, so a dependency can be found in a build directory on one machine and not on
another. Absolute paths point outside the package: the closure that gets loaded into each
interpreter depends on the host. It forces no verdict, but it makes the closure reported
here differ from the one a deployment loads.

## Example
```
$ readelf -d spam.so | grep PATH
 (RPATH)  Library rpath: [/home/ci/build/lib]
```

## Use instead
`-Wl,--enable-new-dtags,-rpath,'$ORIGIN/../lib'`, or vendor libraries with `auditwheel repair`.

## References
- ld.so(8), "Rpath token expansion"
- https://github.com/pypa/auditwheel
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Finding, Severity
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK305",
    name="rpath-search-path",
    title="RPATH, or search paths outside the package",
    severity=Severity.INFO,
    verdicts={},
    fix="use a RUNPATH relative to $ORIGIN",
    fixable=Fixable.SOMETIMES,
    doc=__doc__,
)


def _outside(entry: str) -> bool:
    return not (entry.startswith("$ORIGIN") or entry.startswith("${ORIGIN}"))


def check(facts) -> Iterator[Finding]:
    if facts.rpath:
        yield RULE.finding(facts.path, f"has DT_RPATH `{':'.join(facts.rpath)}`, searched before LD_LIBRARY_PATH "
                           "and inherited by its dependencies", symbol="DT_RPATH",
                           data={"section": ".dynamic", "tag": "DT_RPATH", "entries": list(facts.rpath)})
    outside = [e for e in facts.runpath if _outside(e)]
    if outside:
        yield RULE.finding(facts.path, f"has DT_RUNPATH entries outside the package: `{':'.join(outside)}`",
                           symbol="DT_RUNPATH", data={"section": ".dynamic", "tag": "DT_RUNPATH", "entries": outside})
