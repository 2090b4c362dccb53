"""Extension exports default-visibility symbols besides its entry points.

## What it does
Flags extension modules whose `.dynsym` exports global, default-visibility definitions other
than their entry points: `PyInit_*`, and `PyModExport_*` (PEP 793, 3.15), which CPython
looks up before `PyInit_*`.

## Why is this bad?
An exported symbol can be interposed: if another object in the global scope (a library
loaded `RTLD_GLOBAL`, as `import torch` does, or a renamed copy in the base namespace)
exports the same name, calls inside this extension go to that definition instead of its own.
This is only a risk; IK304 reports the clashes actually present in the scanned files.

## Example
```c
int helper(void) { return 42; }           /* exported by default */
```

## Use instead
```c
static int helper(void) { return 42; }    /* or build with -fvisibility=hidden */
```

## Known problems
C++ extensions built without `-fvisibility=hidden` export every inline function; weak
definitions are counted separately and not listed.

## References
- https://gcc.gnu.org/wiki/Visibility
- Ulrich Drepper, "How To Write Shared Libraries", section 2.2
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Finding, Severity
from interpkit.analyzer.registry import Fixable, Rule

from interpkit.analyzer.elf.modinit import MODEXPORT_PREFIX
from interpkit.analyzer.rules.elf._text import examples, plural, symbols_data

ENTRY_POINT_PREFIXES = ("PyInit_", MODEXPORT_PREFIX)

RULE = Rule(
    code="IK303",
    name="exported-symbols",
    title="extension exports symbols beyond its entry points",
    severity=Severity.INFO,
    verdicts={},
    fix="build with -fvisibility=hidden or make helpers static",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    if not facts.is_extension:
        return
    extra = [n for n in facts.exports if not n.startswith(ENTRY_POINT_PREFIXES)]
    if extra:
        yield RULE.finding(facts.path, f"exports {plural(len(extra), 'symbol')} besides its entry points: {examples(extra)}",
                           symbol=extra[0], data=symbols_data(extra))
