"""Which qualified names a file could possibly spell, read from CPython's `ast` in one walk.

LibCST's QualifiedNameProvider needs scope analysis of the whole file, which costs about eight
times the LibCST parse, and the parse itself costs about eight times CPython's. Most files never
mention anything a rule looks for, so this module answers a cheaper question first: *could* a
node whose dotted name is F have a qualified name in a rule's set? `NameTable.candidates(F)` is
a superset of every name the provider can give a node of that spelling, built the way
`libcst.metadata.scope_provider` derives them:

- an import alias anywhere in the file (scopes ignored: a superset) gives the alias' real name
  and the rest of F after the alias, as `ImportAssignment.get_qualified_names_for` does;
- a builtin root gives `builtins.<root>`;
- a root bound locally anywhere (assignment, def, class, parameter, loop or `with` target,
  `except ... as`, `global`) gives F itself and F under any scope prefix (`*.F`), as
  `Assignment.get_qualified_names_for` prefixes `Cls.f.<locals>`.

Only "no" answers are used: a file or node for which no candidate is in a rule's set cannot
match it (the rule pass is skipped, or matched_name answers None without scope analysis); any
"maybe" is settled by LibCST's own providers, so results equal the full analysis exactly.
`tests/source/test_names_equivalence.py` checks that on the rules' samples and on real trees.
"""
from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field
from typing import Collection, Iterable

_BUILTINS = frozenset(dir(builtins))
ANY_PREFIX = "*."   # a candidate "*.F": F under some scope prefix (a class or function name)


# Fields that never hold a node a rule looks into: identifiers, strings, numbers and constants
# (their ASDL types in CPython's Parser/Python.asdl), and the context and operator singletons.
_NOT_CHILDREN = frozenset({"id", "attr", "arg", "asname", "module", "level", "is_async", "conversion",
                           "type_comment", "kind", "tag", "rest", "kwd_attrs", "simple", "ctx", "op", "ops",
                           "type_ignores"})
_NOT_CHILDREN_OF = {ast.Constant: {"value"}, ast.MatchSingleton: {"value"}, ast.TypeIgnore: {"lineno"},
                    ast.Global: {"names"}, ast.Nonlocal: {"names"},
                    **{cls: {"name"} for cls in (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                                 ast.ExceptHandler, ast.alias, ast.MatchAs, ast.MatchStar)}}
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def _child_fields(cls: type) -> tuple[str, ...]:
    fields = _CHILD_FIELDS.get(cls)
    if fields is None:
        skip = _NOT_CHILDREN | _NOT_CHILDREN_OF.get(cls, set())
        fields = _CHILD_FIELDS[cls] = tuple(f for f in cls._fields if f not in skip)
    return fields


def child_nodes(node: ast.AST) -> list[ast.AST]:
    """ast.iter_child_nodes without contexts and operators, as a list: a few times cheaper than
    the generator pair (iter_fields, iter_child_nodes) that ast.walk is built on."""
    children: list = []
    cls = node.__class__
    fields = _CHILD_FIELDS.get(cls)
    if fields is None:     # () for the many leaf kinds (Name, Constant): not `or`, which would recompute
        fields = _child_fields(cls)
    for name in fields:
        value = getattr(node, name)
        if value.__class__ is list:
            children.extend(value)
        else:
            children.append(value)
    return [c for c in children if c is not None]   # optional fields and a dict's `**` keys


def iter_nodes(tree: ast.AST):
    """Every node under tree (tree included), depth first; what ast.walk gives minus contexts and
    operators, several times faster (tests/source/test_ast_pass.py compares the two)."""
    stack = [tree]
    pop, push, extend = stack.pop, stack.append, stack.extend
    fields_of = _CHILD_FIELDS
    while stack:
        node = pop()
        if node is None:
            continue
        yield node
        cls = node.__class__
        fields = fields_of.get(cls)
        if fields is None:
            fields = _child_fields(cls)
        for name in fields:
            value = getattr(node, name)
            if value.__class__ is list:
                extend(value)
            else:
                push(value)


_TERMINALS: dict[int, tuple[Collection[str], frozenset[str]]] = {}


def terminals_of(names: Collection[str]) -> frozenset[str]:
    """Last components of qualified names ("os.path.join" → "join"), cached per name set (the
    rules' sets live as long as the process)."""
    cached = _TERMINALS.get(id(names))
    if cached is not None and cached[0] is names:
        return cached[1]
    terminals = frozenset(n.rpartition(".")[2] for n in names)
    _TERMINALS[id(names)] = (names, terminals)
    return terminals


def full_name(node: ast.AST) -> str | None:
    """The dotted name LibCST's get_full_name_for_node gives the same node (Call and Subscript
    stand for what they call or index; anything else is spelled "None", as LibCST does)."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Name):
            parts.append(node.id)
            break
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            parts.append("None")
            break
    return ".".join(reversed(parts))


_BINDING_KINDS = frozenset({ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.arg,
                            ast.ExceptHandler, ast.Global, ast.Nonlocal, ast.MatchAs, ast.MatchStar,
                            ast.MatchMapping})


def _prefixes(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass
class NameTable:
    """Import aliases, locally bound names and every dotted spelling of one file."""

    # as-name (what the code writes) -> real names it may stand for
    aliases: dict[str, set[str]] = field(default_factory=dict)
    local: set[str] = field(default_factory=set)        # roots bound other than by import
    spellings: set[str] = field(default_factory=set)    # full names of every Name/Attribute/identifier
    star_import: bool = False

    @classmethod
    def from_tree(cls, tree: ast.AST, words: Iterable[str] = ()) -> "NameTable":
        """One walk (iter_nodes). `words`: every identifier token of the text, so Name nodes LibCST has
        and ast keeps as strings (keywords, parameters, `as` targets) are spellings too."""
        table = cls()
        table.spellings.update(words)
        spellings, local = table.spellings, table.local
        Attribute, Name, Load = ast.Attribute, ast.Name, ast.Load
        # iter_nodes(tree), inlined: a generator's resume per node is a third of this walk
        stack = [tree]
        pop, push, extend, fields_of = stack.pop, stack.append, stack.extend, _CHILD_FIELDS
        while stack:
            node = pop()
            if node is None:
                continue
            cls_ = node.__class__
            if cls_ is Attribute:
                spellings.add(full_name(node))
            elif cls_ is Name:
                if node.ctx.__class__ is not Load:
                    local.add(node.id)   # Store and Del: LibCST records both as assignments
                continue   # a Name has no child nodes
            elif cls_ in _BINDING_KINDS:
                table._add_binding(node)
            fields = fields_of.get(cls_)
            if fields is None:
                fields = _child_fields(cls_)
            for name in fields:
                value = getattr(node, name)
                if value.__class__ is list:
                    extend(value)
                else:
                    push(value)
        return table

    def _add_binding(self, node: ast.AST) -> None:
        """A statement or pattern that binds names (the node types of _BINDING_KINDS)."""
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self._add_import(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.local.add(node.name)
        elif isinstance(node, ast.arg):
            self.local.add(node.arg)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            self.local.update(node.names)
        elif isinstance(node, ast.MatchMapping):
            if node.rest:
                self.local.add(node.rest)
        elif node.name:   # ExceptHandler, MatchAs, MatchStar
            self.local.add(node.name)

    def _add_import(self, node: ast.Import | ast.ImportFrom) -> None:
        module = ""
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self.star_import = True
                continue
            for real_part in reversed(_prefixes(alias.name)):   # longest first, as LibCST tries them
                as_name = alias.asname or real_part
                if module.endswith("."):
                    real = module + real_part
                elif module:
                    real = f"{module}.{real_part}"
                else:
                    real = real_part
                self.aliases.setdefault(as_name, set()).add(real)

    def candidates(self, spelling: str) -> set[str]:
        """Every qualified name LibCST could give a node spelled `spelling` (a superset)."""
        out: set[str] = set()
        root = spelling.partition(".")[0]
        if root in _BUILTINS:
            out.add(f"builtins.{root}")
        if root in self.local:
            out.update((spelling, root, ANY_PREFIX + spelling, ANY_PREFIX + root))
        for prefix in _prefixes(spelling):
            for real in self.aliases.get(prefix, ()):
                rest = spelling[len(prefix):]
                out.add(real + rest)
                out.add(real)   # an access resolves to its referent's own name
        return out

    def could_match(self, spelling: str, names: Collection[str], prefixes: Collection[str] = ()) -> bool:
        """Could a node spelled `spelling` have a qualified name in `names` (or starting with
        one of `prefixes`)? False is certain; True means: ask LibCST."""
        for candidate in self.candidates(spelling):
            if candidate.startswith(ANY_PREFIX):
                tail = candidate[1:]   # ".F": any scope prefix before it
                if any(n.endswith(tail) for n in names) or prefixes:
                    return True
            elif candidate in names or any(candidate.startswith(p) for p in prefixes):
                return True
        return False

    def mentions(self, names: Collection[str], prefixes: Collection[str] = ()) -> bool:
        """Could any node of the file match? (Star imports resolve nothing in LibCST either.)"""
        terminals = {n.rpartition(".")[2] for n in names}
        wanted_roots = {p.partition(".")[0] for p in prefixes}
        for spelling in self.spellings:
            terminal = spelling.rpartition(".")[2]
            if terminal in terminals or terminal in self.aliases or (prefixes and (
                    spelling.partition(".")[0] in wanted_roots or spelling.partition(".")[0] in self.aliases
                    or spelling.partition(".")[0] in self.local)):
                if self.could_match(spelling, names, prefixes):
                    return True
        return False
