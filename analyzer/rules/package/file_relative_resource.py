"""IK501: a file path derived from `__file__`.

## What it does
Finds calls that turn `__file__` into a path to read or list: `os.path.*(__file__)`,
`pathlib.Path(__file__)`, `open(...)` / `io.open(...)` of a `__file__`-relative path,
`os.listdir`, `glob.glob`, `ctypes.CDLL` and `importlib.util.spec_from_file_location`.
Only the outermost such call is reported; code under `if __name__ == "__main__":` is
skipped.

## Why is this bad?
A module served from a torch.package archive has no file on disk: its `__file__` is a
mangled name such as `<torch_package_0>.model/utils.py`, so every path built from it points
nowhere and the first `open` raises `FileNotFoundError` (measured with torch 2.13).

## Example
```python
import os
VOCAB = open(os.path.join(os.path.dirname(__file__), "vocab.txt")).read()
```

## Use instead
```python
# at packaging time
exporter.save_text("model", "vocab.txt", vocab)
# in the model
from torch.package import PackageImporter
VOCAB = importer.load_text("model", "vocab.txt")
```
Or pass the data in at construction time.

## Known problems
`os.path.abspath(__file__)` used only in a log message is reported too.

## References
- https://pytorch.org/docs/stable/package.html#torch-package-sharp-edges
"""
from __future__ import annotations

import ast
import posixpath
from pathlib import Path

import libcst as cst

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule, terminal_name

RULE = Rule(
    code="IK501",
    name="file-relative-resource",
    title="file path derived from __file__ (none inside a torch.package archive)",
    severity=Severity.WARNING,
    backends=frozenset({Backend.NAMESPACES}),
    verdicts={Backend.NAMESPACES: Verdict.UNKNOWN},
    fix="save the file into the package (save_text/save_binary) and read it through the importer",
    doc=__doc__,
)

TRIGGER = r"__file__"

PATH_CALLS = frozenset({
    "builtins.open", "io.open", "pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath",
    "os.listdir", "os.scandir", "os.walk", "glob.glob", "glob.iglob", "ctypes.CDLL",
    "importlib.util.spec_from_file_location", "numpy.load", "torch.load", "json.load",
})
PATH_TERMINALS = frozenset({n.rpartition(".")[2] for n in PATH_CALLS}
                           | {n for n in dir(posixpath) if not n.startswith("_")})


def _is_main_guard(node: cst.If) -> bool:
    """`if __name__ == "<string>":` (plain checks: libcst.matchers alone costs ~0.5 s to import)."""
    test = node.test
    return (isinstance(test, cst.Comparison) and isinstance(test.left, cst.Name) and test.left.value == "__name__"
            and len(test.comparisons) == 1 and isinstance(test.comparisons[0].operator, cst.Equal)
            and isinstance(test.comparisons[0].comparator, cst.SimpleString))


class FileRelativeResourceCheck:
    """What IK501 looks for, written once for both trees; the main guard, the path call's names
    and the `__file__` search differ by tree."""
    RULE = RULE

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.reported_depth = 0          # >0 while inside a call already reported
        self.main_guards: list[bool] = []
        self.main_guard_depth = 0        # >0 inside `if __name__ == "__main__":`

    def visit_If(self, node) -> None:
        guard = self._is_main_guard(node)
        self.main_guards.append(guard)
        self.main_guard_depth += guard

    def leave_If(self, node) -> None:
        self.main_guard_depth -= self.main_guards.pop()

    def visit_Call(self, node) -> None:
        if self.reported_depth or self.main_guard_depth:
            if self.reported_depth:
                self.reported_depth += 1
            return
        name = self._is_path_call(node)
        if name and self._mentions_file(node):
            self.report(node, f"`{name.removeprefix('builtins.')}` builds a path from `__file__`, which does not exist inside a torch.package archive", data={"call": name})
            self.reported_depth = 1

    def leave_Call(self, node) -> None:
        if self.reported_depth:
            self.reported_depth -= 1


class FileRelativeResource(FileRelativeResourceCheck, SourceRule):
    """IK501 on LibCST's tree (the reference; files the ast pass cannot decide)."""

    @staticmethod
    def _is_main_guard(node: cst.If) -> bool:
        return _is_main_guard(node)

    def _is_path_call(self, node: cst.Call) -> str | None:
        terminal = terminal_name(node.func)
        if terminal is None or (terminal not in PATH_TERMINALS and terminal not in self.context.aliases):
            return None
        for name in sorted(self.qualified_names(node.func)):
            if name in PATH_CALLS or name.startswith(NAME_PREFIXES):
                return name
        return None

    @staticmethod
    def _mentions_file(node: cst.CSTNode) -> bool:
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, cst.Name) and current.value == "__file__":
                return True
            stack.extend(current.children)
        return False


class FileRelativeResourceAst(FileRelativeResourceCheck, ast_pass.AstRule):
    """IK501 on CPython's ast (the scan's fast path)."""

    def _is_main_guard(self, node: ast.If) -> bool:
        test = node.test
        return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
                and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
                and isinstance(test.comparators[0], ast.Constant) and isinstance(test.comparators[0].value, (str, bytes))
                and ast_pass.one_string_token(self.facts, test.comparators[0]))

    def _is_path_call(self, node: ast.Call) -> str | None:
        terminal = ast_pass.terminal_name(node.func)
        if terminal is None or (terminal not in PATH_TERMINALS and terminal not in self.facts.aliases):
            return None
        found = self.matching_names(node.func, PATH_CALLS, NAME_PREFIXES)
        return found[0] if found else None

    @staticmethod
    def _mentions_file(node: ast.AST) -> bool:
        """LibCST's Name nodes also stand for attribute, keyword and parameter names."""
        for sub in ast.walk(node):
            if ((isinstance(sub, ast.Name) and sub.id == "__file__") or (isinstance(sub, ast.Attribute) and sub.attr == "__file__")
                    or (isinstance(sub, ast.keyword) and sub.arg == "__file__") or (isinstance(sub, ast.arg) and sub.arg == "__file__")):
                return True
        return False


VISITOR = FileRelativeResource
AST_VISITOR = FileRelativeResourceAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = PATH_CALLS
NAME_PREFIXES = ("os.path.",)

VALID = [
    "print(__file__)\n",
    "import os\nos.path.join('a', 'b')\n",
    "import os\nif __name__ == '__main__':\n    open(os.path.join(os.path.dirname(__file__), 'x'))\n",
    "def open(p):\n    return p\n",
]
INVALID = [
    "import os\nHERE = os.path.dirname(os.path.abspath(__file__))  # bad\n",
    "import os.path as osp\ndata = open(osp.join(osp.dirname(__file__), 'vocab.txt')).read()  # bad\n",
    "from pathlib import Path as P\nROOT = P(__file__).parent  # bad\n",
    "from os.path import dirname as d\nx = d(__file__)  # bad\n",
    "import os\nHERE = os.path.dirname(__file__)  # interpkit: ignore[IK501]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
