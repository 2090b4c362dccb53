"""IK503: an import whose module name is computed at run time.

## What it does
Finds `importlib.import_module(name)` and `__import__(name)` where `name` is not a string
literal, under any alias.

## Why is this bad?
torch.package finds a model's dependencies by reading its source: literal imports (and
literal `import_module("x")` calls) are seen and packaged, a computed name is not. The
module is then missing from the archive and the import fails only when that code path runs,
typically in production.

## Example
```python
import importlib
backbone = importlib.import_module(f"models.{cfg.backbone}")
```

## Use instead
```python
from models import resnet, vit
BACKBONES = {"resnet": resnet, "vit": vit}
backbone = BACKBONES[cfg.backbone]
```
Or `intern`/`extern` the candidate modules explicitly in the packaging plan.

## References
- https://pytorch.org/docs/stable/package.html#how-torch-package-finds-your-code-s-dependencies
"""
from __future__ import annotations

from pathlib import Path


from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

RULE = Rule(
    code="IK503",
    name="dynamic-import",
    title="import whose module name is computed at run time",
    severity=Severity.WARNING,
    backends=frozenset({Backend.NAMESPACES}),
    verdicts={Backend.NAMESPACES: Verdict.UNKNOWN},
    fix="import the candidates literally, or intern/extern them explicitly when packaging",
    doc=__doc__,
)

TRIGGER = r"import_module|__import__"

IMPORTERS = frozenset({"importlib.import_module", "builtins.__import__", "importlib.__import__"})


class DynamicImportCheck:
    """What IK503 looks for, written once for both trees (walk.SourceRule, ast_pass.AstRule)."""
    RULE = RULE

    def visit_Call(self, node) -> None:
        name = self.matched_name(node.func, IMPORTERS)
        if name is None:
            return
        target = self.argument(node, 0, "name")
        if target is not None and not self.is_string(target):
            self.report(node, f"`{name.removeprefix('builtins.')}` imports a computed name the packager cannot see", data={"call": name})


class DynamicImport(DynamicImportCheck, SourceRule):
    """IK503 on LibCST's tree (the reference; files the ast pass cannot decide)."""


class DynamicImportAst(DynamicImportCheck, ast_pass.AstRule):
    """IK503 on CPython's ast (the scan's fast path)."""


VISITOR = DynamicImport
AST_VISITOR = DynamicImportAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = IMPORTERS

VALID = [
    "import importlib\nm = importlib.import_module('json')\n",
    "m = __import__('os')\n",
    "def import_module(x):\n    return x\nimport_module(y)\n",
]
INVALID = [
    "import importlib\nm = importlib.import_module(name)  # bad\n",
    "from importlib import import_module as im\nm = im(f'models.{kind}')  # bad\n",
    "mod = __import__(name)  # bad\n",
    "import importlib\nm = importlib.import_module(name)  # interpkit: ignore[IK503]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
