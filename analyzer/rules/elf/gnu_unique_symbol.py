"""Library defines `STB_GNU_UNIQUE` symbols.

## What it does
Flags shared objects whose `.dynsym` defines symbols with binding `STB_GNU_UNIQUE` (GCC
emits it, as `STB_LOOS`, for static data members and function-local statics of inline
functions and templates in C++).

## Why is this bad?
glibc keeps one definition of each unique symbol per link-map namespace, whichever library
loaded it first, and marks the library un-unloadable. Two copies of the same library in the
base namespace therefore share these objects: state meant to be per copy is shared. The
copies runtime's loader makes each interpreter's copy with these symbols turned `STB_WEAK`
(native/copies/templates.py; measured: gnu_unique_cpp counts per interpreter), so its verdict is
ok; a copy made any other way shares them. Each dlmopen namespace has its own unique-symbol
table, so namespaces are unaffected; subinterpreters share the library anyway.

## Example
```cpp
inline int &counter() { static int value = 0; return value; }   // STB_GNU_UNIQUE
```

## Use instead
Build with `-fno-gnu-unique` or hide the symbols (`-fvisibility=hidden`,
`-fvisibility-inlines-hidden`), or load the library in its own namespace.

## References
- https://gcc.gnu.org/onlinedocs/gcc/Code-Gen-Options.html#index-fno-gnu-unique
- glibc `elf/dl-lookup.c` (`do_lookup_unique`)
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

from interpkit.analyzer.rules.elf._text import examples, plural, symbols_data

RULE = Rule(
    code="IK206",
    name="gnu-unique-symbol",
    title="STB_GNU_UNIQUE symbols are shared by every copy in one namespace",
    severity=Severity.WARNING,
    backends=frozenset({Backend.COPIES}),
    verdicts={Backend.COPIES: Verdict.OK},   # the copies loader weakens them per copy
    fix="rebuild with -fno-gnu-unique or hidden visibility",
    fixable=Fixable.SOMETIMES,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    if facts.gnu_unique:
        yield RULE.finding(facts.path,
                           f"defines {plural(len(facts.gnu_unique), 'STB_GNU_UNIQUE symbol')}: {examples(facts.gnu_unique)}",
                           symbol=facts.gnu_unique[0], data=symbols_data(facts.gnu_unique))
