"""IK407: custom operators loaded or compiled while the model runs.

## What it does
Finds `torch.ops.load_library`, `torch.classes.load_library`,
`torch.utils.cpp_extension.load` / `load_inline`, and Python kernel registration with
`torch.library` (`Library`, `custom_op`, `impl`, `register_fake`, `define`).

## Why is this bad?
The operator registry lives in libtorch. When libtorch is shared by all interpreters
(subinterpreters, renamed copies) the first interpreter's registration is what every
interpreter sees: a second `load_library` finds the library already loaded and registers
nothing, a Python kernel registered by one interpreter is then called from another
interpreter's threads, and `cpp_extension.load` compiles into one shared build directory
from several interpreters at once. Under namespaces each interpreter has its own libtorch and
its own copy of the operator library, which works but loads the library once per interpreter.

What the library itself registers is read from the binary once the scan reaches it (the path
is followed statically, see `interpkit.analyzer.source.op_loads`): IK208 for
`TORCH_LIBRARY*` registrations, IK209 for c10 registry keys, IK410 when the path names no
file.

## Example
```python
import torch
torch.ops.load_library("build/libroi_ops.so")
```

## Use instead
Package the operators as an extension module that the serving process imports once
(`extern` it in torch.package), and call them as `torch.ops.<ns>.<op>`.

## References
- https://pytorch.org/docs/stable/library.html
- https://pytorch.org/tutorials/advanced/cpp_custom_ops.html
"""
from __future__ import annotations

from pathlib import Path

import libcst as cst

from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

RULE = Rule(
    code="IK407",
    name="runtime-op-library-load",
    title="custom operators loaded or compiled while the model runs",
    severity=Severity.WARNING,
    backends=ALL_BACKENDS,
    verdicts={Backend.NAMESPACES: Verdict.OK, Backend.SUBINTERPRETERS: Verdict.UNKNOWN,
              Backend.COPIES: Verdict.UNKNOWN},
    fix="ship the operators as an extension the host imports once; extern it when packaging",
    doc=__doc__,
)

TRIGGER = r"load_library|cpp_extension|torch\.library|from torch import library|custom_op|register_fake"

LOADS = frozenset({"torch.ops.load_library", "torch.classes.load_library", "torch._ops.ops.load_library",
                   "torch.utils.cpp_extension.load", "torch.utils.cpp_extension.load_inline"})
REGISTRATIONS = frozenset({f"torch.library.{n}" for n in ("Library", "custom_op", "impl", "register_fake",
                                                          "define", "register_kernel", "register_autograd")})


class RuntimeOpLibraryLoadCheck:
    """What IK407 looks for in calls, written once for both trees; decorators differ by tree."""
    RULE = RULE

    def visit_Call(self, node) -> None:
        name = self.matched_name(node.func, LOADS)
        if name:
            self.report(node, f"`{name}` registers operators in libtorch's process-wide registry", data={"call": name})
            return
        name = self.matched_name(node.func, REGISTRATIONS)
        if name:
            self.report(node, f"`{name}` registers a Python kernel in libtorch's process-wide dispatcher", data={"call": name})

    def _decorated(self, decorator, anchor) -> None:
        # a decorator call is also visited by visit_Call; report bare decorators only here
        if self.is_call(decorator):
            return
        name = self.matched_name(decorator, REGISTRATIONS)
        if name:
            self.report(anchor, f"`@{name}` registers a Python kernel in libtorch's process-wide dispatcher", data={"call": name})


class RuntimeOpLibraryLoad(RuntimeOpLibraryLoadCheck, SourceRule):
    """IK407 on LibCST's tree (the reference; files the ast pass cannot decide)."""

    def visit_Decorator(self, node: cst.Decorator) -> None:
        self._decorated(node.decorator, node)


class RuntimeOpLibraryLoadAst(RuntimeOpLibraryLoadCheck, ast_pass.AstRule):
    """IK407 on CPython's ast (the scan's fast path): decorators hang off the def."""

    def visit_FunctionDef(self, node) -> None:
        for decorator in node.decorator_list:
            if not self.is_call(decorator):
                self._decorated(decorator, ast_pass.decorator_position(self.facts, decorator))

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_ClassDef = visit_FunctionDef


VISITOR = RuntimeOpLibraryLoad
AST_VISITOR = RuntimeOpLibraryLoadAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = LOADS | REGISTRATIONS

VALID = [
    "import torch\nx = torch.ops.aten.add(1, 2)\n",
    "import ctypes\nlib = ctypes.CDLL('libfoo.so')\n",
    "def load_library(p):\n    return p\nload_library('x')\n",
]
INVALID = [
    "import torch\ntorch.ops.load_library('libops.so')  # bad\n",
    "import torch as T\ndef setup():\n    T.ops.load_library('libops.so')  # bad\n",
    "from torch.utils.cpp_extension import load as jit\nops = jit(name='ops', sources=['ops.cpp'])  # bad\n",
    "import torch.utils.cpp_extension as ce\nce.load_inline('m', cpp_sources='')  # bad\n",
    "import torch\n@torch.library.custom_op('mylib::f', mutates_args=())  # bad\ndef f(x):\n    return x\n",
    "import torch\ntorch.ops.load_library('libops.so')  # interpkit: ignore[IK407]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
