"""IK409: a module-level container used as a registry.

## What it does
Finds module-level names bound to a mutable container (`{}`, `[]`, `set()`, `dict()`,
`defaultdict(...)`, `OrderedDict()`) that functions in the same module fill in
(`NAME[key] = ...`, `NAME.append(...)`, `NAME.update(...)`, ...). Reported once, at the
binding, at info level.

## Why is this bad?
Nothing breaks by itself: every interpreter imports its own copy of the module, so each gets
its own, empty registry. That is exactly the surprise: a plugin registered, a cache warmed
or a counter bumped in one interpreter is invisible to the others, and code that assumed one
process-wide registry (register in the host, look up in the model) silently finds nothing.

## Example
```python
_BACKBONES = {}

def register_backbone(name):
    def wrap(fn):
        _BACKBONES[name] = fn
        return fn
    return wrap
```

## Use instead
Keep registries per interpreter on purpose and fill them at import (decorators on
module-level functions do), or pass the registry explicitly; share data across interpreters
only as bytes through the host.

## Known problems
Mutation through another module (`other._BACKBONES[k] = v`) is not followed.

## References
- https://docs.python.org/3/c-api/init.html#sub-interpreter-support
"""
from __future__ import annotations

import ast
import re
from bisect import bisect_left, bisect_right
from pathlib import Path

import libcst as cst
from libcst.metadata import GlobalScope

from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source.names import child_nodes, iter_nodes
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import FileContext, SourceRule, run_rule

RULE = Rule(
    code="IK409",
    name="module-level-registry",
    title="module-level container used as a registry",
    severity=Severity.INFO,
    backends=ALL_BACKENDS,
    verdicts={b: Verdict.OK for b in Backend},
    fix="treat the registry as per-interpreter state; do not expect entries from other interpreters",
    doc=__doc__,
)

# Both a module-level `NAME = {` / `NAME: T = [` / `NAME = dict(` ... and an indented write
# (`X[k] = v`, `X.append(`) somewhere; the visitor does the real check.
TRIGGER = (r"(?ms)\A(?=.*^[A-Za-z_]\w*\s*(?::[^=\n]+)?=\s*(?:\{|\[|(?:\w+\.)*(?:set|dict|list|defaultdict|OrderedDict)\())"
           r"(?=.*^[ \t]+[A-Za-z_]\w*(?:\[[^\n]*\]\s*=[^=]|\.(?:append|add|update|setdefault|extend|insert)\())")

CONTAINER_CALLS = frozenset({"builtins.dict", "builtins.list", "builtins.set", "collections.defaultdict",
                             "collections.OrderedDict"})
MUTATORS = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "__setitem__"})
NOT_REGISTRIES = frozenset({"__all__", "__slots__", "__path__"})


class ModuleLevelRegistry(SourceRule):
    RULE = RULE

    def __init__(self, path: Path, context: FileContext) -> None:
        super().__init__(path, context)
        self.containers: dict[str, cst.CSTNode] = {}
        self.class_depth = 0
        # names written inside functions; confirmed against scope analysis only at the end
        self.mutations: list[cst.Name] = []

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.class_depth += 1

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.class_depth -= 1

    def _is_container(self, value: cst.BaseExpression | None) -> bool:
        if isinstance(value, (cst.Dict, cst.List, cst.Set)):
            return True
        return isinstance(value, cst.Call) and self.matched_name(value.func, CONTAINER_CALLS) is not None

    def _bind(self, node: cst.CSTNode, target: cst.BaseExpression, value: cst.BaseExpression | None) -> None:
        if (isinstance(target, cst.Name) and target.value not in NOT_REGISTRIES
                and self.function_depth == 0 and self.class_depth == 0 and self._is_container(value)):
            self.containers.setdefault(target.value, node)

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) == 1:
            self._bind(node, node.targets[0].target, node.value)
        for target in node.targets:
            self._note_mutation(target.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._bind(node, node.target, node.value)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._note_mutation(node.target)

    def _global_name_in_function(self, name: cst.Name) -> str | None:
        """The name if it is used inside a function and resolves to a module-level binding."""
        scope = self.scope_of(name)
        if scope is None or isinstance(scope, GlobalScope):
            return None
        assignments = scope[name.value]
        if assignments and all(isinstance(a.scope, GlobalScope) for a in assignments):
            return name.value
        return None

    def _note_mutation(self, target: cst.BaseExpression) -> None:
        if isinstance(target, cst.Subscript) and isinstance(target.value, cst.Name) and self.function_depth:
            self.mutations.append(target.value)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if (isinstance(func, cst.Attribute) and func.attr.value in MUTATORS and isinstance(func.value, cst.Name)
                and self.function_depth):
            self.mutations.append(func.value)

    def leave_Module(self, original_node: cst.Module) -> None:
        mutated = {n.value for n in self.mutations
                   if n.value in self.containers and self._global_name_in_function(n)}
        for name, node in self.containers.items():
            if name in mutated:
                self.report(node, f"`{name}` is a module-level registry filled from functions; "
                                  "each interpreter gets its own copy", data={"name": name})


VISITOR = ModuleLevelRegistry


class ModuleLevelRegistryAst(ast_pass.AstRule):
    """ModuleLevelRegistry on CPython's ast (the scan's fast path; same findings). The LibCST
    visitor asks ScopeProvider whether a name written in a function resolves to the module's
    binding: here, whether the innermost scope or an enclosing function binds it too, from the
    file's bindings (ast_pass.collect_bindings; names a `nonlocal` or `:=` rebinds are left to
    LibCST: Undecidable)."""
    RULE = RULE

    def __init__(self, facts, walk) -> None:
        super().__init__(facts, walk)
        self.containers: dict[str, ast.AST] = {}
        self.class_depth = 0
        self.mutations: list[tuple[str, tuple[int, ...], int | None]] = []   # (name, functions, innermost scope)

    def visit_ClassDef(self, node) -> None:
        self.class_depth += 1

    def leave_ClassDef(self, node) -> None:
        self.class_depth -= 1

    def _is_container(self, value) -> bool:
        if isinstance(value, (ast.Dict, ast.List, ast.Set)):
            return True
        return isinstance(value, ast.Call) and self.matched_name(value.func, CONTAINER_CALLS) is not None

    def _bind(self, node, target, value) -> None:
        if (isinstance(target, ast.Name) and target.id not in NOT_REGISTRIES
                and self.function_depth == 0 and self.class_depth == 0 and self._is_container(value)):
            self.containers.setdefault(target.id, node)

    def _mutated(self, name: ast.Name) -> None:
        where = self._walk.where(name)
        self.mutations.append((name.id, where.functions, where.own_scope))

    def _note_mutation(self, target) -> None:
        if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and self.function_depth:
            self._mutated(target.value)

    def visit_Assign(self, node) -> None:
        if len(node.targets) == 1:
            self._bind(node, node.targets[0], node.value)
        for target in node.targets:
            self._note_mutation(target)

    def visit_AnnAssign(self, node) -> None:
        self._bind(node, node.target, node.value)

    def visit_AugAssign(self, node) -> None:
        self._note_mutation(node.target)

    def visit_Call(self, node) -> None:
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr in MUTATORS and isinstance(func.value, ast.Name)
                and self.function_depth):
            self._mutated(func.value)

    def _global_name_in_function(self, name: str, functions: tuple[int, ...], scope: int | None) -> bool:
        if scope is None:            # the module's own scope is the innermost one
            return False
        bindings = self.facts.bindings()
        if name in bindings.nonlocal_names or name in bindings.walrus_names:
            raise ast_pass.Undecidable(name)
        declared = bindings.declared_global.get(name, set())
        bound = (bindings.assigned.get(name, set()) | bindings.imported.get(name, set())) - declared
        for inner in (scope, *reversed(functions)):   # innermost first: the nearest scope that knows the name
            if inner in declared:
                return True
            if inner in bound:
                return False
        return True

    def finish(self) -> None:
        mutated = {name for name, functions, scope in self.mutations
                   if name in self.containers and self._global_name_in_function(name, functions, scope)}
        for name, node in self.containers.items():
            if name in mutated:
                self.report(node, f"`{name}` is a module-level registry filled from functions; "
                                  "each interpreter gets its own copy", data={"name": name})


AST_VISITOR = ModuleLevelRegistryAst


def could_report(tree: ast.Module, text: str, table) -> bool:
    """A cheap superset of the visitor on CPython's ast (the scan skips LibCST when False): some
    name bound to a container literal or a call at module level is also subscript-assigned or
    mutated inside a function or lambda (scopes not checked: the visitor does that)."""
    bound = set()
    statements = list(tree.body)
    while statements:   # module level: every statement not inside a def or class
        statement = statements.pop()
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign):
            target, value = statement.target, statement.value
        else:
            target = value = None
        if (isinstance(target, ast.Name) and target.id not in NOT_REGISTRIES
                and isinstance(value, (ast.Dict, ast.List, ast.Set, ast.Call))):
            bound.add(target.id)
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            statements.extend(getattr(statement, field, ()))
    if not bound or not re.search(r"\b(?:%s)\b(?:\s|\\\n|#[^\n]*)*[\[.]" % "|".join(map(re.escape, bound)), text):
        return False
    # Code inside a def or lambda: defs are reached through statements alone, lambdas only
    # through expressions, so expressions are walked only where the text may hold one.
    expressions = "lambda" in text or not text.isascii()
    # A def or lambda whose lines never spell a bound name holds no write to it (an ASCII
    # file's identifiers are its text; a non-ASCII one is walked whole, the parser NFKC-folds).
    mentions = _NameLines(text, bound) if text.isascii() else None
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if node.__class__ in _FUNCTIONS:
            if (mentions is None or mentions.within(node)) and any(_writes_to(inner, bound) for inner in iter_nodes(node)):
                return True
        elif expressions:
            stack.extend(child_nodes(node))
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                stack.extend(getattr(node, field, ()))
    return False


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


class _NameLines:
    """Whether the lines of a def (its decorators included) or lambda spell one of `names`:
    the lines where each name occurs in the text (as a substring: a superset), bisected."""

    def __init__(self, text: str, names: set[str]) -> None:
        starts = [0]
        find = text.find
        at = find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = find("\n", at + 1)
        lines = set()
        for name in names:
            at = find(name)
            while at >= 0:
                lines.add(bisect_right(starts, at))   # 1-based line of the occurrence
                at = find(name, at + len(name))
        self.lines = sorted(lines)

    def within(self, node: ast.AST) -> bool:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
        at = bisect_left(self.lines, first)
        return at < len(self.lines) and self.lines[at] <= node.end_lineno


def _writes_to(node: ast.AST, bound: set[str]) -> bool:
    """A subscript assignment to, or a mutator call on, one of the `bound` names."""
    cls = node.__class__
    if cls is ast.Assign or cls is ast.AugAssign:
        for target in (node.targets if cls is ast.Assign else (node.target,)):
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id in bound:
                return True
    elif cls is ast.Call:
        func = node.func
        return (isinstance(func, ast.Attribute) and func.attr in MUTATORS and isinstance(func.value, ast.Name)
                and func.value.id in bound)
    return False

VALID = [
    "DEFAULTS = {'a': 1}\ndef get(k):\n    return DEFAULTS[k]\n",
    "def f():\n    cache = {}\n    cache['a'] = 1\n",
    "__all__ = []\n__all__.append('x')\n",
    "ITEMS = []\nITEMS.append(1)\n",
    "REG = {}\ndef f(REG):\n    REG['a'] = 1\n",
]
INVALID = [
    "_REGISTRY = {}  # bad\ndef register(name, fn):\n    _REGISTRY[name] = fn\n",
    "import collections as c\nHOOKS = c.defaultdict(list)  # bad\ndef add(k, f):\n    HOOKS[k].append(f)\n    HOOKS.setdefault(k, [])\n",
    "def add(x):\n    SEEN.add(x)\nSEEN: set = set()  # bad\n",
    "_REGISTRY = {}  # interpkit: ignore[IK409]\ndef register(name, fn):\n    _REGISTRY[name] = fn\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
