"""LibCST's qualified names for a node, computed from CPython's ast where the file makes them certain.

`QualifiedNameProvider` answers "what may this Name/Attribute stand for?" from a scope analysis
of the whole file, which costs about 8x LibCST's parse (itself ~7x CPython's). The rules ask it
only about dotted spellings whose root is an imported module, a builtin, or nothing bound at
all. For those roots the answer follows from the file's import statements alone, so
`ExactNames` reproduces it from CPython's ast, step for step as `libcst.metadata.scope_provider`
computes it (`Scope.get_qualified_names_for`, `Access.record_assignments`,
`ImportAssignment.get_qualified_names_for`):

- a node that is an *access* (a Name, or the longest dotted prefix of its attribute chain that
  an `import a.b` binds) takes the names of the imports it refers to; at the binding's own
  scope level only imports that come before it count, else it falls back to the parent scope;
- any other node takes every visible import bound to its longest bound prefix, in any order;
- a builtin root with no import in sight is `builtins.<root>`; an unbound root has no name.

Where a root is bound any other way (assignment, def, parameter, `global`, an import in a class
body), or where the order of an access against its imports depends on LibCST's visiting order
(decorators, defaults, comprehensions), `Undecidable` is raised and the caller runs LibCST on
the file instead. `tests/source/test_ast_pass.py` compares every answer with LibCST's on the
rules' samples and on real trees.
"""
from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import Callable, Collection

_BUILTINS = frozenset(dir(builtins))
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_BLOCKS = ("body", "orelse", "finalbody")


class Undecidable(Exception):
    """LibCST's scope analysis is needed to answer for this node."""


@dataclass(frozen=True)
class ImportBinding:
    """One name an import statement binds, and the statement it comes from."""

    as_name: str                                   # what the code writes: "np", "os.path"
    scope: int | None                              # id() of the enclosing def, None at module level
    position: tuple[int, int]                      # the statement's (line, column): imports are statements
    module: str                                    # "" for `import`, "..pkg" for `from ..pkg import`
    aliases: tuple[tuple[str, str | None], ...]    # every (name, asname) of the statement

    def qualified_names(self, full_name: str) -> set[str]:
        """ImportAssignment.get_qualified_names_for: every alias of the statement is tried."""
        out: set[str] = set()
        for real_full, asname in self.aliases:
            parts = real_full.split(".")
            for i in range(len(parts), 0, -1):
                real = as_name = ".".join(parts[:i])
                if self.module.endswith("."):
                    real = self.module + real
                elif self.module:
                    real = f"{self.module}.{real}"
                if asname:
                    as_name = asname
                if full_name.startswith(as_name):
                    rest = full_name.split(as_name, 1)[1]
                    if rest and not rest.startswith("."):
                        continue
                    rest = rest.lstrip(".")
                    out.add(f"{real}.{rest}" if rest else real)
                    break
        return out


@dataclass(frozen=True)
class Where:
    """Where a node sits, as the ast pass sees it (what LibCST's ScopeProvider would tell)."""

    functions: tuple[int, ...]     # id() of each enclosing def or lambda, outermost first
    own_scope: int | None          # id() of the innermost scope of any kind (class, comprehension too)
    chain: tuple[int, ...]         # id() of every enclosing scope of any kind, outermost first
    position: tuple[int, int]      # the node's (line, column)
    ordered: bool                  # False where LibCST's visiting order may differ from the text's


class ExactNames:
    """Import bindings of one file, by the name they bind."""

    def __init__(self, tree: ast.Module, local_roots: set[str],
                 local_scopes: Callable[[], tuple[dict[str, set[int | None]], set[str]]] | None = None) -> None:
        self.local = local_roots                      # roots bound other than by import (names.NameTable)
        # where each of those is bound (None: the module), and names whose binding scope only
        # LibCST's rules place (nonlocal); computed on first need (ast_pass.local_bindings)
        self._local_scopes_of = local_scopes
        self._local_scopes: tuple[dict[str, set[int | None]], set[str]] | None = None
        self.bindings: dict[str, list[ImportBinding]] = {}
        self.dotted_roots: set[str] = set()          # roots of `import a.b` bindings (attribute accesses)
        self.class_roots: set[str] = set()           # roots imported inside a class body
        self.scope_names: set[str] = set()           # names of every def and class: scope prefixes start with one
        self._collect(tree.body, None, in_class=False)

    def _collect(self, statements: list[ast.stmt], scope: int | None, *, in_class: bool) -> None:
        for statement in statements:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                self._add(statement, scope, in_class)
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.scope_names.add(statement.name)
                self._collect(statement.body, id(statement), in_class=False)
            elif isinstance(statement, ast.ClassDef):
                self.scope_names.add(statement.name)
                self._collect(statement.body, scope, in_class=True)
            else:
                for name in _BLOCKS:
                    self._collect(getattr(statement, name, ()), scope, in_class=in_class)
                for handler in getattr(statement, "handlers", ()):
                    self._collect(handler.body, scope, in_class=in_class)
                for case in getattr(statement, "cases", ()):
                    self._collect(case.body, scope, in_class=in_class)

    def _add(self, statement: ast.Import | ast.ImportFrom, scope: int | None, in_class: bool) -> None:
        module = "" if isinstance(statement, ast.Import) else "." * statement.level + (statement.module or "")
        aliases = tuple((a.name, a.asname) for a in statement.names if a.name != "*")
        for name, asname in aliases:
            written = asname or name
            root = written.partition(".")[0]
            if in_class:
                self.class_roots.add(root)
                continue
            if "." in written:
                self.dotted_roots.add(root)
            # `import a.b.c` binds "a.b.c", "a.b" and "a" (ScopeVisitor._visit_import_alike)
            parts = written.split(".")
            for end in range(len(parts), 0, -1):
                as_name = ".".join(parts[:end])
                self.bindings.setdefault(as_name, []).append(
                    ImportBinding(as_name, scope, (statement.lineno, statement.col_offset), module, aliases))

    # -- answers ---------------------------------------------------------------------------------
    def matching(self, spelling: str, names: Collection[str], prefixes: tuple[str, ...] = (), **where) -> list[str]:
        """The node's qualified names that are in `names` or start with one of `prefixes`, sorted.
        Where the names themselves are Undecidable, an empty answer is still certain when no
        name the node could possibly have matches; otherwise Undecidable propagates."""
        try:
            found = self.qualified_names(spelling, **where)
        except Undecidable:
            if not self._could_match(spelling, names, prefixes):
                return []
            raise
        return sorted(q for q in found if q in names or q.startswith(prefixes))

    def _could_match(self, spelling: str, names: Collection[str], prefixes: tuple[str, ...]) -> bool:
        """Whether any name LibCST could give `spelling` matches (a superset, as names.NameTable).

        A local binding gives F itself or F under a scope prefix, which starts with the name of a
        def or class of this file (`Cls.f.<locals>.F`); an import gives its real name with the rest
        of F, or its own name; a builtin root gives builtins.<root>."""
        def wanted(name: str) -> bool:
            return name in names or name.startswith(prefixes)

        root = spelling.partition(".")[0]
        if root in self.local or root in self.class_roots:
            if wanted(spelling):
                return True
            tail = "." + spelling
            if any(n.endswith(tail) and n.partition(".")[0] in self.scope_names for n in names):
                return True
            if any(p.partition(".")[0] in self.scope_names for p in prefixes):
                return True
        if root in _BUILTINS and wanted(f"builtins.{root}"):
            return True
        prefix = spelling
        while prefix:
            for binding in self.bindings.get(prefix, ()):
                if any(map(wanted, binding.qualified_names(spelling) | binding.qualified_names(prefix))):
                    return True
            prefix = prefix.rpartition(".")[0]
        return False

    def qualified_names(self, spelling: str, *, is_name: bool, top: bool, pure: bool, where: Where) -> set[str]:
        """What LibCST's QualifiedNameProvider gives the Name (is_name) or Attribute spelled
        `spelling`; `top`: no attribute chain encloses it; `pure`: names and attributes only down
        to the root (else it cannot be an access). Raises Undecidable."""
        root = spelling.partition(".")[0]
        if root in self.class_roots or (root in self.local and self._locally_bound(root, where)):
            raise Undecidable(root)
        if not pure:
            return self._generic(spelling, root, where)
        if root in self.dotted_roots:
            bound = self._nearest(spelling, where.functions)[1]
            if is_name or bound:   # may be the access node of an enclosing chain: only the top is certain
                if not top:
                    raise Undecidable(spelling)
                return self._access(spelling, root, where)
            return self._generic(spelling, root, where)
        if is_name:
            return self._access(spelling, root, where)
        return self._generic(spelling, root, where)

    def _locally_bound(self, root: str, where: Where) -> bool:
        """Whether a non-import binding of `root` may be visible from `where`: in its own scope,
        any enclosing one (class scopes included: more than LibCST sees, so never less) or the
        module. Bindings in other functions are invisible there, as in LibCST's scope chain."""
        if self._local_scopes_of is None:
            return True
        if self._local_scopes is None:
            self._local_scopes = self._local_scopes_of()
        scopes, unplaced = self._local_scopes
        if root in unplaced:
            return True
        bound = scopes.get(root, ())
        return None in bound or any(scope in bound for scope in where.chain)

    def _nearest(self, name: str, functions: tuple[int, ...],
                 ) -> tuple[int | None, list[ImportBinding]]:
        """The innermost visible scope binding `name`, and its bindings (Scope._resolve_scope_for_access)."""
        bindings = self.bindings.get(name)
        if not bindings:
            return None, []
        for scope in (*reversed(functions), None):
            found = [b for b in bindings if b.scope == scope]
            if found:
                return scope, found
        return None, []

    def _generic(self, spelling: str, root: str, where: Where) -> set[str]:
        """Scope.get_qualified_names_for for a node that is no access: the longest bound prefix."""
        prefix = spelling
        while prefix:
            _, found = self._nearest(prefix, where.functions)
            if found:
                return {q for b in found for q in b.qualified_names(spelling)}
            if prefix == root and root in _BUILTINS:
                return {f"builtins.{root}"}
            prefix = prefix.rpartition(".")[0]
        return set()

    def _access(self, name: str, root: str, where: Where) -> set[str]:
        """An access: the referents Access.record_assignments keeps, and their own names."""
        scope, found = self._nearest(name, where.functions)
        if found and scope == where.own_scope:
            earlier = [b for b in found if b.position < where.position]
            if len(earlier) != len(found) and not where.ordered:
                raise Undecidable(name)
            if not earlier:   # nothing bound yet at this level: the parent scope answers
                outer = where.functions[:where.functions.index(scope)] if scope is not None else None
                if outer is None:
                    found = []
                else:
                    found = self._nearest(name, outer)[1]
            else:
                found = earlier
        if not found:
            return {f"builtins.{root}"} if name == root and root in _BUILTINS else set()
        return {q for b in found for q in b.qualified_names(name)}
