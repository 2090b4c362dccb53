"""Extension needs a Python-bound library that registers into a registry another library owns.

## What it does
Flags an extension whose DT_NEEDED closure holds a library that has `Py*` references (so
the copies runtime loads a copy of it per interpreter, next to that interpreter's extension
copy) and that registers a key, at static initialisation, in a registry defined by a library
without `Py*` references (which the copies runtime loads once and shares): the facts of
IK209 seen from the extension that pulls the library in.

## Why is this bad?
The second interpreter's copy of the library runs its static initialisers again against the
one shared registry; a registry that refuses a key registered twice ends the process while
that interpreter imports the extension. Measured with torch: `import torch` works in the first
copies interpreter and the second exits with "Key already registered with the same priority:
PyInterpreterHooks" (libtorch_python.so copied, libc10.so shared). The extension itself looks
clean; the failure is in what it loads, so its own copies verdict has to say so.

## Example
```
torch/_C.cpython-311-x86_64-linux-gnu.so  NEEDED libtorch_python.so   (Py* references: copied)
libtorch_python.so  C10_REGISTER_TYPED_CLASS(PyInterpreterHooksRegistry, ...)  -> libc10.so (shared)
```

## Use instead
Serve such packages with the namespaces backend (each namespace has its own registry), or
load the library once per process rather than once per interpreter.

## References
- IK209 (c10-registry-registration), on the library itself
- c10/util/Registry.h (Registry::Register)
"""
from __future__ import annotations

from typing import Iterable, Iterator

from interpkit.analyzer.registry import Fixable, Rule
from interpkit.analyzer.rules.elf._text import examples
from interpkit.core.findings import Backend, Finding, Severity, Verdict

RULE = Rule(
    code="IK308",
    name="copied-dependency-registry",
    title="a dependency copied per interpreter registers into a shared library's registry",
    severity=Severity.WARNING,
    backends=frozenset({Backend.COPIES}),
    verdicts={Backend.COPIES: Verdict.FAIL},
    fix="serve with the namespaces backend, or load the dependency once per process",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def _python_bound(facts) -> bool:
    return any(name.startswith(("Py", "_Py")) for name in facts.imports)


def check(facts) -> Iterator[Finding]:
    """Needs the closure's facts too; see check_set."""
    return iter(())


def check_set(all_facts: Iterable) -> Iterator[Finding]:
    all_facts = list(all_facts)
    by_path = {str(facts.path): facts for facts in all_facts}
    for facts in all_facts:
        if not facts.is_extension or not facts.closure:
            continue
        culprits = []
        for soname, path in facts.closure.items():
            dependency = by_path.get(str(path)) if path else None
            if dependency is None or dependency is facts or not _python_bound(dependency):
                continue
            if dependency.op_library.registries:
                culprits.append(f"{soname} ({examples(dependency.op_library.registries)})")
        if culprits:
            yield RULE.finding(
                facts.path,
                f"loads {', '.join(culprits)}: copied per interpreter, it registers again into a registry "
                "of a library shared by every interpreter (a second copy aborts the process)",
                symbol=culprits[0].split(" ", 1)[0])
