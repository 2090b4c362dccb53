"""IK406: process-wide state changed from model code.

## What it does
Finds writes to state that one interpreter cannot keep to itself: `os.environ[...] = ...`
(and `del`, `update`, `setdefault`, `pop`, `clear`), `os.putenv`, `os.unsetenv`,
`os.chdir`, `os.fchdir`, `os.umask`, `locale.setlocale`, `faulthandler.enable`, and the
interpreter knobs `sys.setrecursionlimit` and `sys.setswitchinterval`.

## Why is this bad?
The working directory and umask are kernel state of the process: one interpreter's
`chdir` moves every other interpreter's relative paths. The environment and the C locale
live in libc: shared by all subinterpreters and renamed libpython copies (one libc), private
to each `dlmopen` namespace (each has its own libc), so the same code behaves differently
per runtime. `faulthandler.enable` installs process-wide signal handlers. The recursion
limit and switch interval are per interpreter on 3.12+ and under namespaces: setting them in
one interpreter does not carry over, which is reported at info level.

## Example
```python
import os
os.environ["OMP_NUM_THREADS"] = "1"
os.chdir(os.path.dirname(__file__))
```

## Use instead
Set the environment before the serving process starts; pass paths explicitly instead of
changing directory; use `torch.set_num_threads` and similar per-call APIs.

## Known problems
Reads (`os.environ.get`) are not reported; writes through a local alias of `os.environ`
(`env = os.environ; env["A"] = "1"`) are not followed.

## References
- https://docs.python.org/3/library/os.html#os.environ
- https://docs.python.org/3/library/locale.html#background-details-hints-tips-and-caveats
"""
from __future__ import annotations

import ast
from pathlib import Path

import libcst as cst

from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source.names import full_name, iter_nodes
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

FAIL, UNKNOWN, OK = Verdict.FAIL, Verdict.UNKNOWN, Verdict.OK
NS, SUB, COPIES = Backend.NAMESPACES, Backend.SUBINTERPRETERS, Backend.COPIES

RULE = Rule(
    code="IK406",
    name="process-global-mutation",
    title="process-wide state changed from model code",
    severity=Severity.WARNING,
    backends=ALL_BACKENDS,
    verdicts={NS: UNKNOWN, SUB: FAIL, COPIES: FAIL},
    fix="configure the process before interpreters start; pass paths and settings explicitly",
    doc=__doc__,
)

TRIGGER = r"environ|putenv|unsetenv|chdir|umask|setrecursionlimit|setswitchinterval|faulthandler|setlocale"

KERNEL_STATE = {NS: FAIL, SUB: FAIL, COPIES: FAIL}       # one process, one kernel view
LIBC_STATE = {NS: UNKNOWN, SUB: FAIL, COPIES: FAIL}      # each dlmopen namespace has its own libc
PER_INTERPRETER = {NS: OK, SUB: OK, COPIES: OK}

# qualified name → (what it changes, severity, verdicts)
CALLS: dict[str, tuple[str, Severity, dict[Backend, Verdict]]] = {
    "os.chdir": ("the process working directory", Severity.WARNING, KERNEL_STATE),
    "os.fchdir": ("the process working directory", Severity.WARNING, KERNEL_STATE),
    "os.umask": ("the process umask", Severity.WARNING, KERNEL_STATE),
    "os.putenv": ("the C environment", Severity.WARNING, LIBC_STATE),
    "os.unsetenv": ("the C environment", Severity.WARNING, LIBC_STATE),
    "locale.setlocale": ("the C locale", Severity.WARNING, LIBC_STATE),
    "faulthandler.enable": ("process-wide fatal-signal handlers", Severity.WARNING,
                            {NS: UNKNOWN, SUB: UNKNOWN, COPIES: UNKNOWN}),
    "sys.setrecursionlimit": ("this interpreter's recursion limit only", Severity.INFO, PER_INTERPRETER),
    "sys.setswitchinterval": ("this interpreter's GIL switch interval only", Severity.INFO, PER_INTERPRETER),
}
ENVIRON = frozenset({"os.environ"})
ENVIRON_WRITERS = frozenset({"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"})


class ProcessGlobalMutationCheck:
    """What IK406 looks for, written once for both trees; `del` and subscript targets differ by tree."""
    RULE = RULE

    def _environ_write(self, node, how: str) -> None:
        self.report(node, f"{how} `os.environ` changes the C environment shared beyond this interpreter",
                    verdicts=LIBC_STATE)

    def _check_target(self, target, anchor, how: str) -> None:
        if self.subscripted(target) is not None and self.matched_name(self.subscripted(target), ENVIRON):
            self._environ_write(anchor, how)

    def visit_Assign(self, node) -> None:
        for target in self.assign_targets(node):
            self._check_target(target, node, "assigning to")

    def visit_AugAssign(self, node) -> None:
        self._check_target(node.target, node, "assigning to")

    def visit_Call(self, node) -> None:
        func = node.func
        writer = self.attribute_of(func)
        if writer in ENVIRON_WRITERS and self.matched_name(func.value, ENVIRON, top=False):
            self._environ_write(node, f"`{writer}` on")
            return
        name = self.matched_name(func, CALLS)
        if name:
            what, severity, verdicts = CALLS[name]
            self.report(node, f"`{name}` changes {what}", severity=severity, verdicts=verdicts, data={"call": name})


class ProcessGlobalMutation(ProcessGlobalMutationCheck, SourceRule):
    """IK406 on LibCST's tree (the reference; files the ast pass cannot decide)."""

    @staticmethod
    def subscripted(target):
        return target.value if isinstance(target, cst.Subscript) else None

    def visit_Del(self, node: cst.Del) -> None:
        if isinstance(node.target, cst.Tuple):
            targets = [element.value for element in node.target.elements]
        else:
            targets = [node.target]
        for target in targets:
            self._check_target(target, node, "deleting from")


class ProcessGlobalMutationAst(ProcessGlobalMutationCheck, ast_pass.AstRule):
    """IK406 on CPython's ast (the scan's fast path)."""

    @staticmethod
    def subscripted(target):
        return target.value if isinstance(target, ast.Subscript) else None

    def visit_Delete(self, node) -> None:
        # LibCST has one target, a Tuple for `del a, b` and for `del (a, b)`: its elements are checked
        targets = node.targets
        if len(targets) == 1 and isinstance(targets[0], ast.Tuple):
            targets = targets[0].elts
        for target in targets:
            self._check_target(target, node, "deleting from")


VISITOR = ProcessGlobalMutation
AST_VISITOR = ProcessGlobalMutationAst


def could_report(tree: ast.Module, text: str, table) -> bool:
    """A cheap superset of the visitor on CPython's ast (the scan skips LibCST when False): a
    call that may be one of CALLS, or `os.environ` (as far as the file's names allow) written
    through a subscript, `del` or one of ENVIRON_WRITERS. Reading the environment is fine."""
    if table.mentions(frozenset(CALLS)):
        return True
    for node in iter_nodes(tree):
        if isinstance(node, ast.Subscript) and not isinstance(node.ctx, ast.Load):
            target = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ENVIRON_WRITERS:
            target = node.func.value
        else:
            continue
        if isinstance(target, (ast.Name, ast.Attribute)) and table.could_match(full_name(target), ENVIRON):
            return True
    return False
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = ENVIRON | frozenset(CALLS)

VALID = [
    "import os\nhome = os.environ.get('HOME')\n",
    "import os\nenv = dict(os.environ)\nenv['A'] = '1'\n",
    "import os\nos.getcwd()\n",
    "environ = {}\nenviron['A'] = '1'\n",
]
INVALID = [
    "import os\nos.environ['OMP_NUM_THREADS'] = '1'  # bad\n",
    "import os as o\no.environ['A'] = 'x'  # bad\n",
    "from os import environ as E\nE.update(A='1')  # bad\n",
    "import os\ndel os.environ['A']  # bad\n",
    "from os import chdir\nchdir('/tmp')  # bad\n",
    "import sys\nsys.setrecursionlimit(10000)  # bad\n",
    "import sys as s\ns.setswitchinterval(0.001)  # bad\n",
    "import faulthandler\nfaulthandler.enable()  # bad\n",
    "import locale as L\nL.setlocale(L.LC_ALL, 'C')  # bad\n",
    "import os\nos.putenv('A', '1')  # bad\n",
    "import os\nos.chdir('/')  # interpkit: ignore[IK406]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
