"""Binary registers operators with torch's dispatcher (TORCH_LIBRARY, TORCH_LIBRARY_IMPL, TORCH_LIBRARY_FRAGMENT).

## What it does
Finds the static initialisers torch's registration macros leave in an op library or
extension: an imported `torch::Library::Library(Kind, std::string ns, ...)` constructor
(`TORCH_LIBRARY*`), the stable-ABI `aoti_torch_library_init_def` / `_fragment` / `_impl`
entry points (`STABLE_TORCH_LIBRARY*`) or `c10::RegisterOperators` (the legacy API), with
the namespaces and dispatch keys named by the macro's init functions.

## Why is this bad?
The dispatcher's operator table lives in libtorch and every registration is process-global.
Torch allows one `TORCH_LIBRARY` (and one definition of each operator) per namespace per
libtorch: a second copy of the library against the same libtorch aborts during its static
initialisation with "Only a single TORCH_LIBRARY can be used to register the namespace"
(or "Tried to register an operator ... with the same name and overload name multiple
times" for a fragment), before Python sees an exception. That is the copies backend, where
extensions are loaded once per interpreter against one shared libtorch. Subinterpreters
share one libtorch and one dispatcher too, and torch's own `torch._C` cannot be imported in
an isolated subinterpreter. A linker namespace has its own libtorch and so its own
dispatcher: the namespaces backend loads the library once per interpreter without
conflict. A library that only adds kernels (`TORCH_LIBRARY_IMPL`) to operators defined
elsewhere overrides a previous kernel with a warning instead of aborting.

## Example
```cpp
TORCH_LIBRARY(roi_ops, m) { m.def("nms(Tensor dets, Tensor scores, float t) -> Tensor"); }
TORCH_LIBRARY_IMPL(roi_ops, CPU, m) { m.impl("nms", &nms_cpu); }
```

## Use instead
Serve the model with the namespaces backend (one libtorch per interpreter), or load the op
library once in the host process and `extern` it when packaging; never load a second copy
into a process that already has its namespace.

## References
- torch/library.h (TORCH_LIBRARY, TorchLibraryInit)
- https://pytorch.org/tutorials/advanced/cpp_custom_ops.html
- https://pytorch.org/docs/stable/library.html
"""
from __future__ import annotations

from typing import Iterator

from interpkit.analyzer.rules.elf._text import examples
from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK208",
    name="torch-op-registration",
    title="binary registers operators in libtorch's process-global dispatcher",
    severity=Severity.WARNING,
    backends=frozenset({Backend.COPIES, Backend.SUBINTERPRETERS}),
    verdicts={Backend.COPIES: Verdict.FAIL, Backend.SUBINTERPRETERS: Verdict.FAIL},
    fix="serve with the namespaces backend, or load the op library once in the host and extern it",
    fixable=Fixable.NONE,
    doc=__doc__,
)


def check(facts) -> Iterator[Finding]:
    ops = facts.op_library
    if not ops.registers_operators:
        return
    namespaces = ops.namespaces
    where = f"namespace{'s' if len(namespaces) != 1 else ''} {examples(namespaces)}" if namespaces else "an unnamed namespace"
    data = {"namespaces": list(namespaces), "kinds": sorted({r.kind for r in ops.registrations}),
            "dispatch_keys": sorted({r.dispatch_key for r in ops.registrations if r.dispatch_key})}
    if ops.defines_operators:
        defined = ops.defined_namespaces or namespaces
        yield RULE.finding(
            facts.path,
            f"defines operators in {where} at load time: a second copy against one libtorch aborts "
            f"(\"Only a single TORCH_LIBRARY can be used to register the namespace {defined[0] if defined else '...'}\")",
            symbol=defined[0] if defined else None, data=data)
    else:
        # Kernels only: a second registration overrides the first with a warning, it does not abort.
        yield RULE.finding(
            facts.path,
            f"adds kernels to operators of {where} in libtorch's shared dispatcher: a second copy overrides them",
            symbol=namespaces[0] if namespaces else None, severity=Severity.INFO,
            verdicts={Backend.COPIES: Verdict.UNKNOWN, Backend.SUBINTERPRETERS: Verdict.UNKNOWN}, data=data)
