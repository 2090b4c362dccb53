"""The source rules on CPython's ast: one walk per file, LibCST's answers without LibCST's cost.

Each source rule has a LibCST visitor (`VISITOR`, the reference: it runs on files this pass
cannot decide, in `fast=False` scans and on the rules' samples) and an ast visitor
(`AST_VISITOR`, a subclass of `AstRule`) that reports the same findings at the same positions.
The ast visitor asks `matched_name` exactly what the LibCST visitor asks; names come from
`exact_names.ExactNames`, which raises `Undecidable` where only LibCST's scope analysis knows the
answer, and then the whole file goes to LibCST. The walk tracks what ScopeProvider would: the
enclosing defs and lambdas, the innermost scope of any kind (class bodies and comprehensions
too), and where LibCST's visiting order may differ from the text's (decorators, defaults,
annotations, comprehensions), so that ordering questions are only answered where certain.

Positions are LibCST's: line, and 1-based column counted in characters (CPython counts bytes).
`tests/source/test_ast_pass.py` holds the two engines to the same findings on every rule sample,
the fixtures and real trees.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Collection, Iterator

from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source.exact_names import ExactNames, Undecidable, Where
from interpkit.analyzer.source.names import NameTable, _child_fields, child_nodes, full_name, terminals_of
from interpkit.core.findings import Backend, Finding, Severity, Verdict

__all__ = ["AstRule", "Undecidable", "run_ast_rules", "call_argument", "literal_string", "is_literal_string"]

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


class FileFacts:
    """What every rule of one file shares: the text's lines, the name table, the exact names."""

    def __init__(self, path: Path, tree: ast.Module, lines: list[str], table: NameTable, aliases: frozenset[str]) -> None:
        self.path = path
        self.lines = lines
        self.table = table
        self.aliases = aliases      # `as` names of import statements (walk.FileContext.aliases)
        self.tree = tree
        self._bindings: Bindings | None = None
        self.exact = ExactNames(tree, table.local, lambda: self.bindings().non_import_scopes())

    def bindings(self) -> "Bindings":
        """Where each name is bound (collect_bindings), walked once per file on first use."""
        if self._bindings is None:
            self._bindings = collect_bindings(self.tree)
        return self._bindings

    def column(self, line: int, byte_offset: int) -> int:
        """LibCST's 1-based column: characters, where CPython's col_offset counts UTF-8 bytes."""
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        if text.isascii():
            return byte_offset + 1
        return len(text.encode("utf-8")[:byte_offset].decode("utf-8", errors="replace")) + 1


class AstRule:
    """Base of a rule's ast visitor: `visit_<Node>` / `leave_<Node>` methods, as LibCST's."""

    RULE: ClassVar[Rule]

    def __init__(self, facts: FileFacts, walk: "_Walk") -> None:
        self.facts = facts
        self.path = facts.path if facts is not None else None
        self._walk = walk
        self.findings: list[Finding] = []

    # -- where ---------------------------------------------------------------------------------
    @property
    def function_depth(self) -> int:
        """>0 inside a def or lambda body: code that runs when called (SourceRule.function_depth)."""
        return self._walk.function_depth

    def runs_at_import(self, node: ast.AST | None = None) -> bool:
        return self._walk.function_depth == 0

    # -- names ---------------------------------------------------------------------------------
    def matching_names(self, node: ast.AST, names: Collection[str], prefixes: tuple[str, ...] = (), *,
                       top: bool = True) -> list[str]:
        """The qualified names of a Name or Attribute `node` that are in `names` or start with one
        of `prefixes`, sorted (none for other nodes, as the rules never ask); raises Undecidable."""
        if not isinstance(node, (ast.Name, ast.Attribute)):
            return []
        return self.facts.exact.matching(full_name(node), names, prefixes, is_name=isinstance(node, ast.Name),
                                         top=top, pure=_pure_chain(node), where=self._walk.where(node))

    def matched_name(self, node: ast.AST, names: Collection[str], *, top: bool = True) -> str | None:
        """SourceRule.matched_name: the first qualified name of `node` found in `names`, or None."""
        terminal = terminal_name(node)
        if terminal is None or (terminal not in terminals_of(names) and terminal not in self.facts.aliases):
            return None
        if not self.facts.table.could_match(full_name(node), names):
            return None
        found = self.matching_names(node, names, top=top)
        return found[0] if found else None

    def mentions(self, node: ast.AST, names: Collection[str]) -> str | None:
        """A Name/Attribute anywhere inside `node` that resolves to one of `names`, or None."""
        for sub, top in _names_and_attributes(node):
            found = self.matched_name(sub, names, top=top)
            if found:
                return found
        return None

    # -- the tree's shapes, named the same on walk.SourceRule (rule logic written once) ----------
    @staticmethod
    def argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
        return call_argument(call, position, keyword)

    def string_value(self, node: ast.AST | None) -> str | None:
        return literal_string(self.facts, node)

    def is_string(self, node: ast.AST | None) -> bool:
        return is_literal_string(self.facts, node)

    @staticmethod
    def attribute_of(node: ast.AST | None) -> str | None:
        return node.attr if isinstance(node, ast.Attribute) else None

    @staticmethod
    def identifier_of(node: ast.AST | None) -> str | None:
        return node.id if isinstance(node, ast.Name) else None

    @staticmethod
    def is_call(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Call)

    @staticmethod
    def is_true(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and node.value is True   # LibCST: the Name `True`

    @staticmethod
    def assign_targets(node: ast.Assign) -> list[ast.expr]:
        return node.targets

    @staticmethod
    def integer_values(node: ast.AST) -> Iterator[int]:
        """Every integer literal inside node (LibCST's Integer nodes: booleans are names there)."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and type(sub.value) is int:
                yield sub.value

    # -- output --------------------------------------------------------------------------------
    def position(self, node: ast.AST) -> tuple[int, int]:
        if isinstance(node, _DecoratorAt):
            return node.lineno, node.column
        return node.lineno, self.facts.column(node.lineno, node.col_offset)

    def report(self, node: ast.AST, message: str, *, fix: str | None = None, severity: Severity | None = None,
               verdicts: dict[Backend, Verdict] | None = None, data: dict[str, str] | None = None) -> None:
        line, column = self.position(node)
        self.findings.append(self.RULE.finding(self.path, message, line=line, column=column,
                                               fix=fix, severity=severity, verdicts=verdicts, data=data))


class _DecoratorAt:
    """Where LibCST's Decorator node starts: the `@` before the decorator expression."""

    def __init__(self, line: int, column: int) -> None:
        self.lineno, self.column = line, column


def decorator_position(facts: FileFacts, expression: ast.expr) -> _DecoratorAt:
    """The `@` of a decorator: CPython keeps only the expression, LibCST's node starts at `@`."""
    text = facts.lines[expression.lineno - 1] if 0 < expression.lineno <= len(facts.lines) else ""
    column = facts.column(expression.lineno, expression.col_offset) - 1   # 0-based characters
    at = column - 1
    while at >= 0 and text[at] in " \t\f":
        at -= 1
    if at < 0 or text[at] != "@":   # `@` on another line (backslash) or hidden behind parentheses
        raise Undecidable("decorator position")
    return _DecoratorAt(expression.lineno, at + 1)


def terminal_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _names_and_attributes(node: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every Name/Attribute inside node, each with whether no attribute chain encloses it."""
    stack: list[tuple[ast.AST, bool]] = [(node, True)]
    while stack:
        current, top = stack.pop()
        if isinstance(current, (ast.Name, ast.Attribute)):
            yield current, top
        inner_top = not isinstance(current, ast.Attribute)
        stack.extend((child, inner_top) for child in ast.iter_child_nodes(current))


def _pure_chain(node: ast.AST) -> bool:
    """Names and attributes down to the root (no call or subscript): only such a chain can be an
    access of an `import a.b` binding (scope_provider._gen_dotted_names)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def call_argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    """walk.call_argument on CPython's ast: positional `position` or `keyword=`, whichever is there."""
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    positional = [a for a in call.args if not isinstance(a, ast.Starred)]
    if position < len(positional):
        return positional[position]
    return None


def literal_string(facts: FileFacts, node: ast.AST | None) -> str | None:
    """walk.literal_string: the text of one plain string literal (LibCST's SimpleString), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and one_string_token(facts, node):
        return node.value
    return None


def is_literal_string(facts: FileFacts, node: ast.AST | None) -> bool:
    """walk.is_literal_string: a string literal, implicitly concatenated ones included, or an
    f-string without replacement fields."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return True
    if isinstance(node, ast.JoinedStr):
        # CPython folds `"a" f"{x}"` into one JoinedStr; LibCST keeps a ConcatenatedString (literal)
        return not any(isinstance(v, ast.FormattedValue) for v in node.values) or not one_string_token(facts, node)
    return False


_ADJACENT = re.compile(r"""['"]\s*[rRbBuUfF]{0,2}['"]""")


def one_string_token(facts: FileFacts, node: ast.expr) -> bool:
    """Whether the literal is written as one token (CPython joins adjacent literals silently).
    Raises Undecidable where the text does not show it plainly (several lines)."""
    if node.end_lineno != node.lineno:
        raise Undecidable("multi-line string literal")
    text = facts.lines[node.lineno - 1].encode("utf-8")[node.col_offset:node.end_col_offset].decode("utf-8", "replace")
    if _ADJACENT.search(text, 1, len(text) - 1):
        # `'a' 'b'`, or quotes side by side inside one literal (`"''"`): the text alone does not tell
        raise Undecidable("adjacent string literals")
    return True


# -- the walk ---------------------------------------------------------------------------------

class _Walk:
    """Pre-order walk in source order calling each rule's visit_/leave_ methods."""

    def __init__(self) -> None:
        self.functions: list[int] = []
        self.scopes: list[int] = []
        self.unordered = 0
        self.function_depth = 0
        self.visits: dict[type, list] = {}
        self.leaves: dict[type, list] = {}
        # node type -> (visit methods, the scope-aware walk or None, leave methods, child fields):
        # one lookup per node instead of a dozen type tests and a child list
        self.plans: dict[type, tuple] = {}

    def where(self, node: ast.AST) -> Where:
        return Where(tuple(self.functions), self.scopes[-1] if self.scopes else None,
                     tuple(self.scopes), (node.lineno, node.col_offset), self.unordered == 0)

    def bind(self, rules: list[AstRule]) -> None:
        self.plans.clear()
        for node_type in {t for r in rules for t in _node_types(r)}:
            name = node_type.__name__
            self.visits[node_type] = [getattr(r, f"visit_{name}") for r in rules if hasattr(r, f"visit_{name}")]
            self.leaves[node_type] = [getattr(r, f"leave_{name}") for r in rules if hasattr(r, f"leave_{name}")]

    def _plan(self, kind: type) -> tuple:
        if kind in _FUNCTIONS:
            special = self._function
        elif kind is ast.Lambda:
            special = self._lambda
        elif kind is ast.ClassDef:
            special = self._class
        elif kind in _COMPREHENSIONS:
            special = self._comprehension
        elif kind is ast.Call or kind is ast.Dict:   # children out of field order: _children
            special = self._ordered_children
        else:
            special = None
        plan = self.plans[kind] = (self.visits.get(kind, ()), special, self.leaves.get(kind, ()), _child_fields(kind))
        return plan

    def visit(self, node: ast.AST) -> None:
        plan = self.plans.get(node.__class__)
        if plan is None:
            plan = self._plan(node.__class__)
        visits, special, leaves, fields = plan
        for visit in visits:
            visit(node)
        if special is not None:
            special(node)
        else:   # _children(node) in field order, inlined: the walk's hot path
            for name in fields:
                value = getattr(node, name)
                if value.__class__ is list:
                    for child in value:
                        if child is not None:
                            self.visit(child)
                elif value is not None:
                    self.visit(value)
        for leave in leaves:
            leave(node)

    def _ordered_children(self, node: ast.AST) -> None:
        for child in _children(node):
            self.visit(child)

    def _outside(self, nodes) -> None:
        """Evaluated in the enclosing scope, visited by LibCST out of text order."""
        self.unordered += 1
        for node in nodes:
            if node is not None:
                self.visit(node)
        self.unordered -= 1

    def _arguments_outside(self, args: ast.arguments) -> None:
        self._outside([*args.defaults, *args.kw_defaults])

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # SourceRule counts the whole def (decorators and defaults too) as function code
        self.function_depth += 1
        self._outside(node.decorator_list)
        self._arguments_outside(node.args)
        self._outside([a.annotation for a in all_arguments(node.args)] + [node.returns])
        self.functions.append(id(node))
        self.scopes.append(id(node))
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()
        self.functions.pop()
        self.function_depth -= 1

    def _lambda(self, node: ast.Lambda) -> None:
        self.function_depth += 1
        self._arguments_outside(node.args)
        self.functions.append(id(node))
        self.scopes.append(id(node))
        self.visit(node.body)
        self.scopes.pop()
        self.functions.pop()
        self.function_depth -= 1

    def _class(self, node: ast.ClassDef) -> None:
        self._outside(node.decorator_list)
        self._outside([*node.bases, *(k.value for k in node.keywords)])
        self.scopes.append(id(node))
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    def _comprehension(self, node) -> None:
        first, *rest = node.generators
        self._outside([first.iter])
        self.scopes.append(id(node))
        self.unordered += 1
        for child in _children(node):
            if child is not first.iter:
                self.visit(child)
        self.unordered -= 1
        self.scopes.pop()


def all_arguments(args: ast.arguments) -> list[ast.arg]:
    return [*args.posonlyargs, *args.args, *([args.vararg] if args.vararg else []), *args.kwonlyargs,
            *([args.kwarg] if args.kwarg else [])]


def _children(node: ast.AST) -> list[ast.AST]:
    """Child nodes in source order (a call's keywords where they are written; a dict's keys
    next to their values); contexts and operators, which no rule visits, left out."""
    children = child_nodes(node)
    if isinstance(node, ast.Call) and node.keywords and node.args:
        children.sort(key=lambda c: (getattr(c, "lineno", 0), getattr(c, "col_offset", 0)) if c is not node.func else (0, -1))
    elif isinstance(node, ast.Dict):
        children = [c for pair in zip(node.keys, node.values) for c in pair if c is not None]
    return children


def _node_types(rule: AstRule) -> set[type]:
    types = set()
    for attribute in dir(type(rule)):
        if attribute.startswith(("visit_", "leave_")):
            node_type = getattr(ast, attribute.partition("_")[2], None)
            if isinstance(node_type, type):
                types.add(node_type)
    return types


@dataclass
class Bindings:
    """Where each name of a file is bound, by the scope LibCST records it in (id() of the def,
    lambda, class or comprehension; None: the module). One walk, made on first need, serves the
    exact names (ExactNames) and IK409's scope check."""

    assigned: dict[str, set[int | None]] = field(default_factory=dict)   # every binding but imports
    imported: dict[str, set[int | None]] = field(default_factory=dict)   # root names of imports
    declared_global: dict[str, set[int | None]] = field(default_factory=dict)   # scopes saying `global`
    nonlocal_names: set[str] = field(default_factory=set)
    walrus_names: set[str] = field(default_factory=set)
    walrus_scopes: dict[str, set[int | None]] = field(default_factory=dict)   # own scope and every enclosing

    def non_import_scopes(self) -> tuple[dict[str, set[int | None]], set[str]]:
        """For ExactNames: {name: scopes binding it other than by import}, where `global` puts the
        binding in the module and a walrus anywhere it may land; and the names only LibCST places."""
        scopes = {name: set(found) for name, found in self.assigned.items()}
        for name in self.declared_global:
            scopes.setdefault(name, set()).add(None)
        for name, found in self.walrus_scopes.items():
            scopes.setdefault(name, set()).update(found)
        return scopes, self.nonlocal_names


class _BindingCollector(AstRule):
    def __init__(self, facts, walk) -> None:
        super().__init__(facts, walk)
        self.found = Bindings()

    def _at(self, table: dict, scope: int | None, *names: str) -> None:
        for name in names:
            table.setdefault(name, set()).add(scope)

    def _here(self) -> int | None:
        return self._walk.scopes[-1] if self._walk.scopes else None

    def visit_Name(self, node) -> None:
        if not isinstance(node.ctx, ast.Load):
            self._at(self.found.assigned, self._here(), node.id)

    def visit_NamedExpr(self, node) -> None:
        # binds in the nearest scope that is not a comprehension: every enclosing one, to be safe
        self.found.walrus_names.add(node.target.id)
        self._at(self.found.walrus_scopes, None, node.target.id)
        self._at(self.found.walrus_scopes, self._here(), node.target.id)
        for scope in self._walk.scopes:
            self._at(self.found.walrus_scopes, scope, node.target.id)

    def visit_FunctionDef(self, node) -> None:
        self._at(self.found.assigned, self._here(), node.name)
        self._at(self.found.assigned, id(node), *(a.arg for a in all_arguments(node.args)))

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node) -> None:
        self._at(self.found.assigned, self._here(), node.name)

    def visit_Lambda(self, node) -> None:
        self._at(self.found.assigned, id(node), *(a.arg for a in all_arguments(node.args)))

    def visit_ExceptHandler(self, node) -> None:
        if node.name:
            self._at(self.found.assigned, self._here(), node.name)

    def visit_Global(self, node) -> None:
        self._at(self.found.declared_global, self._here(), *node.names)

    def visit_Nonlocal(self, node) -> None:
        self.found.nonlocal_names.update(node.names)

    def visit_Import(self, node) -> None:
        self._at(self.found.imported, self._here(), *((a.asname or a.name).partition(".")[0] for a in node.names))

    visit_ImportFrom = visit_Import

    def visit_MatchAs(self, node) -> None:
        if node.name:
            self._at(self.found.assigned, self._here(), node.name)

    visit_MatchStar = visit_MatchAs

    def visit_MatchMapping(self, node) -> None:
        if node.rest:
            self._at(self.found.assigned, self._here(), node.rest)


def collect_bindings(tree: ast.Module) -> Bindings:
    """Every binding of the file by scope (a walk of its own, made only when a rule needs it)."""
    walk = _Walk()
    collector = _BindingCollector(None, walk)
    walk.bind([collector])
    walk.visit(tree)
    return collector.found


def run_ast_rules(path: Path, tree: ast.Module, text: str, table: NameTable, aliases: frozenset[str],
                  visitors: list[type[AstRule]]) -> list[Finding]:
    """Findings of the rules' ast visitors over one file; raises Undecidable (run LibCST instead)
    or RecursionError (nesting too deep for a recursive walk)."""
    facts = FileFacts(path, tree, text.splitlines(), table, aliases)
    walk = _Walk()
    rules = [visitor(facts, walk) for visitor in visitors]
    walk.bind(rules)
    walk.visit(tree)
    for rule in rules:
        finish = getattr(rule, "finish", None)
        if finish is not None:
            finish()
    return [f for rule in rules for f in rule.findings]
