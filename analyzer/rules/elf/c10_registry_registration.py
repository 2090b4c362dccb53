"""Binary adds an entry to a c10 registry that another library owns (C10_REGISTER_CLASS).

## What it does
Finds binaries that call a registry accessor defined in another library
(`c10::impl::PyInterpreterHooksRegistry()` lives in libc10; `C10_DEFINE_REGISTRY`) and keep
a static `g_<Registry><n>` Registerer of their own (`C10_REGISTER_CLASS`,
`C10_REGISTER_TYPED_CLASS`), so loading the binary registers a key at static
initialisation.

## Why is this bad?
A c10 registry is one process-global map inside the library that defines it. Registering
the same key twice with the same priority is refused with "Key already registered with the
same priority: <key>", thrown from a static initialiser, which ends the process. A second
copy of such a binary against one shared libc10 does exactly that: a per-interpreter copy
of `libtorch_python.so` against the one loaded libtorch stops with "Key already registered
with the same priority: PyInterpreterHooks" (what torch::deploy's authors called
"mismatches in the tables"). A linker namespace has its own libc10 and its own registries,
so the namespaces backend is not affected; subinterpreters load the binary once.

## Example
```cpp
C10_REGISTER_TYPED_CLASS(PyInterpreterHooksRegistry, "PyInterpreterHooks", PyInterpreterHooks)
```

## Use instead
Load the binary once per libc10: serve with the namespaces backend, or share the binary
(and the torch Python package that needs it) instead of copying it per interpreter.

## References
- c10/util/Registry.h (Registry::Register, C10_REGISTER_CLASS)
- torch/csrc/PyInterpreterHooks.cpp (libtorch_python's PyInterpreterHooks registration)
"""
from __future__ import annotations

from typing import Iterator

from interpkit.analyzer.rules.elf._text import examples
from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK209",
    name="c10-registry-registration",
    title="binary registers a key in a c10 registry owned by another library",
    severity=Severity.WARNING,
    backends=frozenset({Backend.COPIES}),
    verdicts={Backend.COPIES: Verdict.FAIL},
    fix="load the binary once per libc10 (namespaces backend, or shared rather than copied)",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    registries = facts.op_library.registries
    if registries:
        short = [r.rpartition("::")[2] for r in registries]
        yield RULE.finding(
            facts.path,
            f"registers into {examples(registries)} at load time: a second copy against one libc10 aborts "
            f"(\"Key already registered with the same priority\")",
            symbol=short[0], data={"registries": list(registries)})
