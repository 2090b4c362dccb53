"""Two scanned binaries export the same symbol.

## What it does
Compares the exported (global, default-visibility, defined) `.dynsym` symbols of every
binary in the scan, dependencies included, and reports each pair of files that both define
a name. `PyInit_*` functions and linker markers are ignored.

## Why is this bad?
The dynamic loader binds a name to the first definition in the lookup scope. When both
binaries end up in one scope (one of them `RTLD_GLOBAL`, or both in the base namespace
as the copies runtime puts them), the other binary's calls go to the wrong definition, which
may have a different layout or state. The copies runtime loads every copy `RTLD_LOCAL |
RTLD_DEEPBIND`, so each binary's own definitions come first in its lookup scope (measured:
clash_a and clash_b keep their own counters), and its verdict is ok; a binary loaded
`RTLD_GLOBAL` elsewhere still interposes. Namespaces give each interpreter a private scope and
load extensions `RTLD_LOCAL`; subinterpreters behave like a plain process here.

## Example
```c
/* a.c */ int shared_counter_get(void) { ... }
/* b.c */ int shared_counter_get(void) { ... }
```

## Use instead
Give helpers internal linkage (`static`), hide them (`-fvisibility=hidden`), or link with
`-Wl,-Bsymbolic` so each binary binds to its own definitions.

## References
- https://www.akkadia.org/drepper/dsohowto.pdf (symbol interposition)
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

from interpkit.analyzer.rules.elf._text import examples, plural, symbols_data

RULE = Rule(
    code="IK304",
    name="exported-symbol-clash",
    title="the same symbol is exported by two scanned binaries",
    severity=Severity.WARNING,
    backends=frozenset({Backend.COPIES}),
    verdicts={Backend.COPIES: Verdict.OK},   # RTLD_DEEPBIND: own definitions first
    fix="hide or rename the clashing symbols, or link with -Wl,-Bsymbolic",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    """Clashes need the whole scanned set; see check_set."""
    return iter(())


def check_set(all_facts: Iterable) -> Iterator[Finding]:
    all_facts = list(all_facts)
    # Names in more than one file, with set operations only (C loops over ~150k names for
    # torch), then follow just those. A name listed twice by one file alone pairs with no other.
    seen: set[str] = set()
    in_two: set[str] = set()
    for facts in all_facts:
        in_two.update(seen.intersection(facts.exports))
        seen.update(facts.exports)
    repeated = {name for name in in_two if not name.startswith("PyInit_")}
    if not repeated:
        return
    owners: dict[str, list[int]] = defaultdict(list)
    for index, facts in enumerate(all_facts):
        for name in repeated.intersection(facts.exports):
            owners[name].append(index)
    shared: dict[tuple[int, int], list[str]] = defaultdict(list)
    for name, indexes in owners.items():
        if len(indexes) > 1:
            for a in indexes:
                for b in indexes:
                    if a != b:
                        shared[(a, b)].append(name)
    for (a, b), names in sorted(shared.items()):
        names.sort()
        other = all_facts[b].path
        yield RULE.finding(all_facts[a].path,
                           f"exports {plural(len(names), 'symbol')} also exported by `{other.name}`: {examples(names)}",
                           symbol=names[0], data={**symbols_data(names), "library": other.name})
