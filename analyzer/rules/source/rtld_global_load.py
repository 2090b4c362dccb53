"""IK402: a shared library loaded with RTLD_GLOBAL.

## What it does
Finds `ctypes.CDLL`, `ctypes.PyDLL` and `LoadLibrary` calls whose `mode` includes
`RTLD_GLOBAL` (as `ctypes.RTLD_GLOBAL`, `os.RTLD_GLOBAL` or the literal `0x100`), and
`sys.setdlopenflags(...)` with `RTLD_GLOBAL`, under any import alias.

## Why is this bad?
Inside a `dlmopen` namespace, `dlopen(..., RTLD_GLOBAL)` crashes glibc
(`add_to_global_resize`, measured: docs/facts.md fact 3); `import torch` itself does this for
`libtorch_global_deps.so`. In one shared namespace (subinterpreters, copies) the symbols
become visible to every later load, so two interpreters' libraries bind to each other's
globals.

## Example
```python
import ctypes
ctypes.CDLL("libfoo.so", mode=ctypes.RTLD_GLOBAL)
```

## Use instead
```python
import ctypes
ctypes.CDLL("libfoo.so")  # RTLD_LOCAL; link consumers against libfoo with DT_NEEDED
```

## Known problems
A mode computed in another function (`mode=flags()`) is not followed.

## References
- https://man7.org/linux/man-pages/man3/dlopen.3.html
- https://docs.python.org/3/library/ctypes.html#ctypes.CDLL
"""
from __future__ import annotations

from pathlib import Path


from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

RULE = Rule(
    code="IK402",
    name="rtld-global-load",
    title="shared library loaded with RTLD_GLOBAL",
    severity=Severity.ERROR,
    backends=ALL_BACKENDS,
    verdicts={Backend.NAMESPACES: Verdict.FAIL, Backend.SUBINTERPRETERS: Verdict.UNKNOWN,
              Backend.COPIES: Verdict.FAIL},
    fix="load with RTLD_LOCAL (the default) and link dependents with DT_NEEDED",
    fixable=Fixable.SOMETIMES,
    doc=__doc__,
)

TRIGGER = r"RTLD_GLOBAL|setdlopenflags|0[xX]0*100\b|\b256\b"

LOADERS = frozenset({"ctypes.CDLL", "ctypes.PyDLL", "ctypes.cdll.LoadLibrary", "ctypes.pydll.LoadLibrary",
                     "ctypes.LibraryLoader.LoadLibrary", "_ctypes.dlopen"})
RTLD_GLOBAL_NAMES = frozenset({"ctypes.RTLD_GLOBAL", "os.RTLD_GLOBAL", "_ctypes.RTLD_GLOBAL", "posix.RTLD_GLOBAL"})
RTLD_GLOBAL_VALUE = 0x100  # glibc's value


class RtldGlobalLoadCheck:
    """What IK402 looks for, written once for both trees (walk.SourceRule, ast_pass.AstRule)."""
    RULE = RULE

    def _has_rtld_global(self, expr) -> bool:
        if expr is None:
            return False
        if self.mentions(expr, RTLD_GLOBAL_NAMES):
            return True
        return any(value & RTLD_GLOBAL_VALUE for value in self.integer_values(expr))

    def visit_Call(self, node) -> None:
        loader = self.matched_name(node.func, LOADERS)
        if loader and self._has_rtld_global(self.argument(node, 1, "mode")):
            self.report(node, f"`{loader}` loads a library with RTLD_GLOBAL (crashes inside a dlmopen namespace)", data={"call": loader})
            return
        if self.matched_name(node.func, {"sys.setdlopenflags"}) and self._has_rtld_global(self.argument(node, 0, "flags")):
            self.report(node, "`sys.setdlopenflags` adds RTLD_GLOBAL to every later extension import")


class RtldGlobalLoad(RtldGlobalLoadCheck, SourceRule):
    """IK402 on LibCST's tree (the reference; files the ast pass cannot decide)."""


class RtldGlobalLoadAst(RtldGlobalLoadCheck, ast_pass.AstRule):
    """IK402 on CPython's ast (the scan's fast path)."""


VISITOR = RtldGlobalLoad
AST_VISITOR = RtldGlobalLoadAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = LOADERS | {"sys.setdlopenflags"}

VALID = [
    "import ctypes\nctypes.CDLL('libfoo.so')\n",
    "import ctypes\nctypes.CDLL('libfoo.so', mode=ctypes.RTLD_LOCAL)\n",
    "import sys, os\nsys.setdlopenflags(os.RTLD_NOW)\n",
    "RTLD_GLOBAL = 1\ndef CDLL(name, mode):\n    return name\nCDLL('x', mode=RTLD_GLOBAL)\n",
]
INVALID = [
    "import ctypes\nctypes.CDLL('libfoo.so', mode=ctypes.RTLD_GLOBAL)  # bad\n",
    "from ctypes import CDLL as L, RTLD_GLOBAL as G\nL('libfoo.so', G)  # bad\n",
    "import ctypes as c, os as o\nc.PyDLL('libfoo.so', o.RTLD_GLOBAL | o.RTLD_NOW)  # bad\n",
    "import ctypes\nctypes.CDLL('libfoo.so', 0x100)  # bad\n",
    "import sys, os\nsys.setdlopenflags(os.RTLD_GLOBAL | os.RTLD_LAZY)  # bad\n",
    "import sys as s\nfrom os import RTLD_GLOBAL, RTLD_NOW\ns.setdlopenflags(RTLD_NOW | RTLD_GLOBAL)  # bad\n",
    "import ctypes\nctypes.CDLL('libfoo.so', mode=ctypes.RTLD_GLOBAL)  # interpkit: ignore[IK402]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
