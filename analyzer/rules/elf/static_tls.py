"""Library uses static (initial-exec) TLS.

## What it does
Flags shared objects with `DF_STATIC_TLS` in `DT_FLAGS` (the linker sets it when code uses
the initial-exec TLS model) and reports the size of their `PT_TLS` block.

## Why is this bad?
Initial-exec TLS must fit in the static TLS block glibc reserves at start-up. Every dlmopen
namespace loads its own copy of such a library and takes another slice of that block, next
to libc's own TLS. On the measured machine the 12th namespace already fails with "cannot
allocate memory in static TLS block"; libraries like libgomp bring that limit closer.
Loading still works for a few interpreters, so the verdict is not forced.

## Example
```c
static __thread int depth __attribute__((tls_model("initial-exec")));
```

## Use instead
Build with the default global-dynamic model (`-ftls-model=global-dynamic`), or raise
`GLIBC_TUNABLES=glibc.rtld.optional_static_tls=...` for the process.

## References
- docs/facts.md fact 5 (namespace limits)
- https://www.akkadia.org/drepper/tls.pdf
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK207",
    name="static-tls",
    title="initial-exec TLS uses up the static TLS block each namespace needs",
    severity=Severity.WARNING,
    backends=frozenset({Backend.NAMESPACES}),
    verdicts={},
    fix="rebuild with -ftls-model=global-dynamic or raise glibc.rtld.optional_static_tls",
    fixable=Fixable.SOMETIMES,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    if facts.static_tls_flag:
        yield RULE.finding(facts.path,
                           f"uses initial-exec TLS (DF_STATIC_TLS, PT_TLS {facts.tls_memsz} bytes per thread) "
                           "from the static TLS block each namespace shares",
                           symbol="PT_TLS", data={"segment": "PT_TLS", "tls_bytes": str(facts.tls_memsz)})
