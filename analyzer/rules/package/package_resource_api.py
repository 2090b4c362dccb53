"""IK502: package data or metadata looked up by module name.

## What it does
Finds `importlib.resources` calls (`files`, `read_text`, `read_binary`, `open_text`,
`open_binary`, `path`, `as_file`, `contents`, `is_resource`), `pkg_resources` resource and
distribution lookups, and `importlib.metadata` lookups (`version`, `distribution`,
`metadata`, `entry_points`, `files`, `requires`), with the backports
`importlib_resources` / `importlib_metadata` too.

## Why is this bad?
Inside a torch.package archive a module's `__name__` is mangled (`<torch_package_0>.model`),
there is no distribution metadata, and the importer is not one these APIs know: every call
above fails from an archive, with `ModuleNotFoundError` for `importlib.resources.files(__name__)`
and for `pkg_resources` / `importlib.metadata` themselves unless they were externed (measured
with torch 2.13).

## Example
```python
from importlib.resources import files
LABELS = files(__name__).joinpath("labels.txt").read_text()
```

## Use instead
Save resources with `exporter.save_text(...)` / `save_binary(...)` and read them through
`torch.package.PackageImporter.load_text(...)`, or pass them in at construction time;
record versions at packaging time instead of looking them up at run time.

## References
- https://pytorch.org/docs/stable/package.html
- https://docs.python.org/3/library/importlib.resources.html
"""
from __future__ import annotations

from pathlib import Path


from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

RULE = Rule(
    code="IK502",
    name="package-resource-api",
    title="package data or metadata looked up by module name",
    severity=Severity.WARNING,
    backends=frozenset({Backend.NAMESPACES}),
    verdicts={Backend.NAMESPACES: Verdict.UNKNOWN},
    fix="save resources into the package and read them with the importer's load_text/load_binary",
    doc=__doc__,
)

TRIGGER = r"pkg_resources|importlib[._](?:resources|metadata)|from importlib import[^\n]*(?:resources|metadata)"

_RESOURCES = ("files", "read_text", "read_binary", "open_text", "open_binary", "path", "as_file",
              "contents", "is_resource")
_METADATA = ("version", "distribution", "metadata", "entry_points", "files", "requires")
_PKG_RESOURCES = ("resource_filename", "resource_string", "resource_stream", "resource_listdir",
                  "resource_exists", "resource_isdir", "get_distribution", "require", "iter_entry_points")
LOOKUPS = frozenset(
    {f"{mod}.{n}" for mod in ("importlib.resources", "importlib_resources") for n in _RESOURCES}
    | {f"{mod}.{n}" for mod in ("importlib.metadata", "importlib_metadata") for n in _METADATA}
    | {f"pkg_resources.{n}" for n in _PKG_RESOURCES}
)


class PackageResourceApiCheck:
    """What IK502 looks for, written once for both trees (walk.SourceRule, ast_pass.AstRule)."""
    RULE = RULE

    def visit_Call(self, node) -> None:
        name = self.matched_name(node.func, LOOKUPS)
        if name:
            self.report(node, f"`{name}` cannot find data or metadata for a module loaded from a torch.package archive", data={"call": name})


class PackageResourceApi(PackageResourceApiCheck, SourceRule):
    """IK502 on LibCST's tree (the reference; files the ast pass cannot decide)."""


class PackageResourceApiAst(PackageResourceApiCheck, ast_pass.AstRule):
    """IK502 on CPython's ast (the scan's fast path)."""


VISITOR = PackageResourceApi
AST_VISITOR = PackageResourceApiAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = LOOKUPS

VALID = [
    "import importlib\nm = importlib.import_module('json')\n",
    "def files(x):\n    return x\nfiles(__name__)\n",
]
INVALID = [
    "from importlib.resources import files\nLABELS = files(__name__).joinpath('l.txt').read_text()  # bad\n",
    "import importlib.resources as ir\ntext = ir.read_text(__package__, 'l.txt')  # bad\n",
    "import pkg_resources\np = pkg_resources.resource_filename(__name__, 'cfg.yaml')  # bad\n",
    "from importlib import metadata\nv = metadata.version('numpy')  # bad\n",
    "import pkg_resources\np = pkg_resources.resource_filename(__name__, 'x')  # interpkit: ignore[IK502]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
