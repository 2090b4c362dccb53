"""IK410: `torch.ops.load_library` names a file that does not exist.

## What it does
Evaluates the path passed to `torch.ops.load_library` / `torch.classes.load_library`
statically (literals, `__file__`, `os.path`, `pathlib`, f-strings, the module's own helper
functions and constants; see `interpkit.analyzer.source.op_loads`) and flags a path that
names no file. In a model scan the same evaluation follows helper functions across the
modules of the import graph, into installed packages too.

## Why is this bad?
`load_library` hands the path to the dynamic loader: a missing file raises `OSError` at the
call, in every backend. Packages usually catch it and carry on without their compiled
operators (torchvision then raises "Couldn't load custom C++ ops" at the first `nms`), so
the model fails later and far from the cause. A packaged model must ship or extern the
library, and the scan cannot follow operators that are not there.

## Example
```python
import os, torch
torch.ops.load_library(os.path.join(os.path.dirname(__file__), "_C.so"))  # not built
```

## Use instead
Build and install the op library next to the module that loads it (or fix the path), and
`extern` the package that ships it when packaging.

## References
- https://pytorch.org/docs/stable/generated/torch.ops.load_library.html
- https://pytorch.org/tutorials/advanced/cpp_custom_ops.html
"""
from __future__ import annotations

import ast
from pathlib import Path

import libcst as cst

from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule
from interpkit.core.findings import Backend, Finding, Severity, Verdict

RULE = Rule(
    code="IK410",
    name="missing-op-library",
    title="torch.ops.load_library names a file that does not exist",
    severity=Severity.ERROR,
    verdicts={b: Verdict.FAIL for b in Backend},
    fix="build or install the op library where the path points, or fix the path",
    doc=__doc__,
)

TRIGGER = r"load_library"


def message_for(load) -> str:
    return f"`{load.call}` loads `{load.path}`, which does not exist (the load raises OSError in every backend)"


def data_for(load) -> dict:
    return {"call": load.call, "library": str(load.path)}


class MissingOpLibrary(SourceRule):
    RULE = RULE

    def visit_Module(self, node: cst.Module) -> None:
        from interpkit.analyzer.source.op_loads import loads_in_source

        try:
            tree = ast.parse(node.code)
        except (SyntaxError, ValueError, RecursionError):
            return
        try:
            loads = loads_in_source(self.path, tree)
        except (RecursionError, MemoryError):   # absurd nesting: nothing this rule can evaluate
            return
        for load in loads:
            if load.path is not None and not load.exists:
                column = _column(node.code, load.line)
                self.findings.append(RULE.finding(self.path, message_for(load), line=load.line, column=column,
                                                  data=data_for(load)))


def _column(code: str, line: int) -> int:
    lines = code.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return len(text) - len(text.lstrip()) + 1


VISITOR = MissingOpLibrary


class MissingOpLibraryAst(ast_pass.AstRule):
    """MissingOpLibrary on the tree the scan already parsed (the LibCST visitor parses the code again)."""
    RULE = RULE

    def visit_Module(self, node) -> None:
        from interpkit.analyzer.source.op_loads import loads_in_source

        try:
            loads = loads_in_source(self.path, node)
        except (RecursionError, MemoryError):
            return
        for load in loads:
            if load.path is not None and not load.exists:
                text = self.facts.lines[load.line - 1] if 0 < load.line <= len(self.facts.lines) else ""
                self.findings.append(RULE.finding(self.path, message_for(load), line=load.line,
                                                  column=len(text) - len(text.lstrip()) + 1, data=data_for(load)))


AST_VISITOR = MissingOpLibraryAst

VALID = [
    "import torch\ntorch.ops.load_library(some_path())\n",
    "import os, torch\ntorch.ops.load_library(os.environ['OPS_LIBRARY'])\n",
    "import torch\ndef load(path):\n    torch.ops.load_library(path)\n",
    "import ctypes\nctypes.CDLL('/nonexistent/libops.so')\n",
    "import os, torch\nif os.name == 'nt':\n    torch.ops.load_library('ops.dll')\n",
]
INVALID = [
    "import torch\ntorch.ops.load_library('/nonexistent/libroi_ops.so')  # bad\n",
    "import os\nimport torch as T\nT.ops.load_library(os.path.join(os.path.dirname(__file__), '_C.so'))  # bad\n",
    "import os.path as osp\nimport torch\n\n\ndef _load(name):\n    torch.ops.load_library(osp.join(osp.dirname(__file__), name + '.so'))\n\n\n"
    "_load('_missing_ops')  # bad\n",
    "from pathlib import Path\nimport torch\nLIB = Path(__file__).parent / 'lib' / 'libops.so'\n"
    "torch.classes.load_library(str(LIB))  # bad\n",
    "import importlib.resources\nimport torch\n"
    "torch.ops.load_library(str(importlib.resources.files(__name__) / 'libops.so'))  # bad\n",
    "import torch\ntorch.ops.load_library('/nonexistent/libroi_ops.so')  # interpkit: ignore[IK410]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
