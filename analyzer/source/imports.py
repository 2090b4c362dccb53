"""Import graph of a model: from its entry files through installed packages, down to the .so files.

Modules are found with the finders of `sys.meta_path` (PathFinder over the model's own folders,
`config.python_paths` and `sys.path`; then those installs add, such as editable installs),
exactly as `import` would search them, but nothing is
ever imported or executed: import statements are read from the source. They are read with
CPython's `ast` rather than LibCST because the graph may cover thousands of files (all of
torch) and only the import statements matter here; the rule pass uses LibCST.
"""
from __future__ import annotations

import ast
import enum
import importlib.machinery
import json
import os
import sys
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from interpkit.analyzer.plumbing.cache import resolve
from interpkit.analyzer.config import Config
from interpkit.analyzer.plumbing.modules import enclosing_packages
from interpkit.analyzer.source.installed import editable_projects

EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


class ModuleKind(enum.StrEnum):
    PYTHON = "python"          # pure-Python source
    EXTENSION = "extension"    # a compiled extension module (.so)
    STDLIB = "stdlib"          # standard library (or built into the interpreter)
    NAMESPACE = "namespace"    # PEP 420 namespace package (no code of its own)
    MISSING = "missing"        # not found on the search path

    def __str__(self) -> str:
        return self.value


@dataclass
class ModuleNode:
    name: str
    kind: ModuleKind
    path: Path | None = None
    is_package: bool = False
    local: bool = False          # part of the model being scanned (not an installed package)
    conditional: bool = True     # every import of it sits under try/except ImportError or TYPE_CHECKING
    type_checking_only: bool = True

    @property
    def top_level(self) -> str:
        return self.name.partition(".")[0]

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind.value, "local": self.local}
        if self.path is not None:
            out["path"] = str(self.path)
        if self.conditional:
            out["conditional"] = True
        return out


@dataclass
class ImportGraph:
    roots: list[str] = field(default_factory=list)
    nodes: dict[str, ModuleNode] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)
    # first importer that reached each module: a BFS tree, so chains are shortest
    parent: dict[str, str] = field(default_factory=dict)
    search_path: list[str] = field(default_factory=list)
    # torch.ops/torch.classes.load_library calls and where they point (op_loads.OpLibraryLoad):
    # op libraries have no PyInit_, so no import statement reaches them.
    op_libraries: list = field(default_factory=list)
    # what makes a file the model's own: under these folders, outside site-packages (from
    # `shortest` characters on) and outside an editable install's checkout
    local_prefixes: tuple[str, ...] = ()
    installed_prefixes: tuple[str, ...] = ()
    shortest: int = 0

    def is_local(self, path: Path | None) -> bool:
        if path is None:
            return False
        text = str(resolve(path))
        return text.startswith(self.local_prefixes) and "site-packages" not in text[self.shortest:] \
            and not text.startswith(self.installed_prefixes)

    def traced_nodes(self, traced: dict[str, str]) -> list[ModuleNode]:
        """Nodes for what a trace (`scan --trace`) saw loaded, name -> file, in packages the
        import statements never reached or reached as missing (lazy and dynamic imports, or
        imports through a finder the walk could not follow). The standard library is left out:
        torch.package externs it by itself."""
        found_tops = {n.top_level for n in self.nodes.values() if n.kind is not ModuleKind.MISSING}
        out = []
        for name, file in sorted(traced.items()):
            top = name.partition(".")[0]
            if top in found_tops or top in sys.stdlib_module_names or top in sys.builtin_module_names:
                continue
            path = Path(file)
            kind = ModuleKind.EXTENSION if file.endswith(EXTENSION_SUFFIXES) else ModuleKind.PYTHON
            out.append(ModuleNode(name, kind, path, path.stem == "__init__", local=self.is_local(path),
                                  conditional=False, type_checking_only=False))
        return out

    def chain_to(self, name: str) -> tuple[str, ...]:
        """Shortest import chain from an entry module to `name` (entry first)."""
        chain = [name]
        seen = {name}
        while chain[-1] in self.parent:
            step = self.parent[chain[-1]]
            if step in seen:
                break
            chain.append(step)
            seen.add(step)
        return tuple(reversed(chain))

    def of_kind(self, kind: ModuleKind) -> list[ModuleNode]:
        return [n for n in self.nodes.values() if n.kind is kind]

    def to_json(self) -> dict:
        return {
            "roots": list(self.roots),
            "modules": [self.nodes[n].to_json() for n in sorted(self.nodes)],
            "edges": {k: sorted(v) for k, v in sorted(self.edges.items()) if v},
            "counts": {k.value: len(self.of_kind(k)) for k in ModuleKind},
            "op_libraries": [load.to_json() for load in self.op_libraries],
        }


@dataclass(frozen=True)
class ImportRef:
    name: str                  # absolute dotted name
    line: int
    conditional: bool          # under try/except ImportError or `if TYPE_CHECKING:`
    type_checking: bool
    lazy: bool = False         # inside a function body: runs when called, not at import
    from_names: tuple[str, ...] = ()   # `from name import a, b`: a and b may be submodules


def module_name_for(path: Path, *, folders: dict | None = None) -> tuple[str, Path]:
    """(dotted name, sys.path root) of a source file or package folder, walking up through __init__.py.

    `folders` remembers each folder's enclosing packages across calls (ModuleNames: one scan)."""
    path = resolve(path)
    if path.is_dir():
        leaf, folder = path.name, path.parent
    elif path.name == "__init__.py":
        leaf, folder = path.parent.name, path.parent.parent
    else:
        leaf, folder = path.stem, path.parent
    if folders is None:
        packages, root = enclosing_packages(folder)
    else:
        found = folders.get(folder)
        if found is None:
            found = folders[folder] = enclosing_packages(folder)
        packages, root = found
    return ".".join(reversed([leaf, *packages])), root


class ModuleNames:
    """module_name_for over the files of one scan, each answer kept (the entries are named by the
    rule pass, the graph and the reached-file pass alike): the same answers, each folder's
    packages looked up once."""

    def __init__(self) -> None:
        self.folders: dict = {}
        self.names: dict[Path, tuple[str, Path]] = {}

    def __call__(self, path: Path) -> tuple[str, Path]:
        found = self.names.get(path)
        if found is None:
            found = self.names[path] = module_name_for(path, folders=self.folders)
        return found


def _last_component(node: ast.expr) -> str:
    """`ast.unparse(node).split(".")[-1]`, without unparsing the common spellings: a name's
    text is its id, an attribute's ends in `.attr`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ast.unparse(node).split(".")[-1]


_GUARD_NAMES = ("ImportError", "ModuleNotFoundError", "Exception", "BaseException")


def _is_import_guard(handler_types: list[ast.expr | None]) -> bool:
    for node in handler_types:
        if node is None:
            return True  # bare except
        names = [e for e in (node.elts if isinstance(node, ast.Tuple) else [node])]
        for name in names:
            if _last_component(name) in _GUARD_NAMES:
                return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return _last_component(test) == "TYPE_CHECKING"


def _spells(node: ast.expr, names: tuple[str, ...]) -> bool:
    """Does any identifier inside `node` (a name, attribute, keyword or lambda argument) read
    as one of `names`? ast.unparse writes an expression's identifiers as they are and quotes
    every string, so its text can end in `.X` or be `X` only where some identifier is X: when
    none is, `_last_component(node)` cannot be X and the unparse is not needed. Iterative (the
    parser accepts expressions nested deeper than a recursive walk could follow)."""
    stack = [node]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        if not isinstance(item, ast.AST):
            continue   # a None in a list field (dict keys of `**x`, absent kw_defaults)
        for key in item._fields:
            value = getattr(item, key, None)
            if type(value) is str:
                if value in names and key in _IDENTIFIER_FIELDS:
                    return True
            elif isinstance(value, ast.AST):
                stack.append(value)
            elif type(value) is list:
                extend(value)
    return False


_IDENTIFIER_FIELDS = frozenset({"id", "attr", "arg"})
_TYPE_CHECKING = ("TYPE_CHECKING",)


def _is_type_checking_fast(test: ast.expr) -> bool:
    """_is_type_checking(test), with no unparse of a test that spells no TYPE_CHECKING (most
    are `sys.version_info >= (3, 8)`-like comparisons; the unparse was most of a file's walk)."""
    kind = type(test)
    if kind is ast.Name:
        return test.id == "TYPE_CHECKING"
    if kind is ast.Attribute:
        return test.attr == "TYPE_CHECKING"
    return _spells(test, _TYPE_CHECKING) and _is_type_checking(test)


class _ImportCollector(ast.NodeVisitor):
    """Every node, as the graph has always read a file: import statements with their guard,
    TYPE_CHECKING and function context, and literal import_module("x") / __import__("x") calls
    wherever they sit. _StatementWalk gives the same refs when no such call can occur."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.refs: list[ImportRef] = []
        self.guard = 0
        self.type_checking = 0
        self.function_depth = 0

    def _add(self, name: str, line: int, from_names: tuple[str, ...] = ()) -> None:
        if name:
            self.refs.append(ImportRef(name, line, self.guard > 0 or self.type_checking > 0,
                                       self.type_checking > 0, self.function_depth > 0, from_names))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Try(self, node: ast.Try) -> None:
        guarded = _is_import_guard([h.type for h in node.handlers])
        self.guard += guarded
        for stmt in node.body:
            self.visit(stmt)
        self.guard -= guarded
        for stmt in node.handlers + node.orelse + node.finalbody:
            self.visit(stmt)

    visit_TryStar = visit_Try

    def visit_If(self, node: ast.If) -> None:
        tc = _is_type_checking(node.test)
        self.type_checking += tc
        for stmt in node.body:
            self.visit(stmt)
        self.type_checking -= tc
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        name = _from_target(self.package, node)
        if name is not None:
            self._add(name, node.lineno, tuple(a.name for a in node.names if a.name != "*"))

    def visit_Call(self, node: ast.Call) -> None:
        # literal importlib.import_module("x") / __import__("x"): torch.package follows these too
        func = node.func
        func_name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if func_name in _CALL_NAMES and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and not node.args[0].value.startswith("."):
            self._add(node.args[0].value, node.lineno)
        self.generic_visit(node)


_CALL_NAMES = ("import_module", "__import__")


def _from_target(package: str, node: ast.ImportFrom) -> str | None:
    """The absolute module a `from ... import` names; None for a relative import beyond the top."""
    if not node.level:
        return node.module or ""
    base = package.split(".") if package else []
    if node.level - 1 > len(base):
        return None  # relative import beyond the top: Python refuses it too
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _may_call_import(source: str) -> bool:
    """Could the file hold an import_module(...) or __import__(...) call? Identifiers are NFKC
    normalised by the parser, so a non-ASCII file is searched in that form too."""
    if "import_module" in source or "__import__" in source:
        return True
    if source.isascii():
        return False
    import unicodedata

    if unicodedata.is_normalized("NFKC", source):
        return False   # folding changes nothing (C's quick check: most non-ASCII files)
    folded = unicodedata.normalize("NFKC", source)
    return "import_module" in folded or "__import__" in folded


def _may_spell(source: str, word: str) -> bool:
    """Can an identifier of the file be `word`? An ASCII text holds its identifiers as they are;
    in any other the parser NFKC-folds them, so one may read `word` without the text holding it."""
    return word in source or not source.isascii()


class _StatementWalk:
    """The refs _ImportCollector gives, from the statements alone (import statements cannot sit
    inside an expression), in the same order and with the same guard, TYPE_CHECKING and function
    context: for files where no import_module/__import__ call can occur (_may_call_import), a
    fraction of the nodes to visit. Statement nesting is bounded by the tokenizer's 100 indent
    levels, so the recursion cannot run out of stack.

    eager: only the refs that run at import time, the ones the graph follows in an installed
    package (runs_at_import): neither lazy nor conditional, or guarded but of the package's own
    modules; bodies whose refs would all be lazy or type-checking (functions, TYPE_CHECKING
    branches) are not walked at all."""

    def __init__(self, module: str, is_package: bool, eager: bool = False, spells_type_checking: bool = True) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.top = module.partition(".")[0]
        self.refs: list[ImportRef] = []
        self.eager = eager
        # False: no identifier of the file is TYPE_CHECKING, so no if-test is one (_may_spell)
        self.spells_type_checking = spells_type_checking

    def walk(self, body: list[ast.stmt], guard: bool, type_checking: bool, lazy: bool) -> None:
        refs = self.refs
        for node in body:
            kind = type(node)
            if kind is ast.Import:
                for alias in node.names:
                    if alias.name and not (guard and self.eager and alias.name.partition(".")[0] != self.top):
                        refs.append(ImportRef(alias.name, node.lineno, guard or type_checking, type_checking, lazy))
            elif kind is ast.ImportFrom:
                name = _from_target(self.package, node)
                if name and not (guard and self.eager and name.partition(".")[0] != self.top):
                    refs.append(ImportRef(name, node.lineno, guard or type_checking, type_checking, lazy,
                                          tuple(a.name for a in node.names if a.name != "*")))
            elif kind is ast.FunctionDef or kind is ast.AsyncFunctionDef:
                if not self.eager:
                    self.walk(node.body, guard, type_checking, True)
            elif kind is ast.ClassDef:
                self.walk(node.body, guard, type_checking, lazy)
            elif kind is ast.If:
                checking = type_checking or (self.spells_type_checking and _is_type_checking_fast(node.test))
                if not (checking and self.eager):
                    self.walk(node.body, guard, checking, lazy)
                if node.orelse:
                    self.walk(node.orelse, guard, type_checking, lazy)
            elif kind in _TRY_KINDS:
                guarded = guard or _is_import_guard([h.type for h in node.handlers])
                self.walk(node.body, guarded, type_checking, lazy)   # eager: the package's own modules
                for handler in node.handlers:
                    self.walk(handler.body, guard, type_checking, lazy)
                self.walk(node.orelse, guard, type_checking, lazy)
                self.walk(node.finalbody, guard, type_checking, lazy)
            elif kind in _LOOP_KINDS:
                self.walk(node.body, guard, type_checking, lazy)
                self.walk(node.orelse, guard, type_checking, lazy)
            elif kind in _WITH_KINDS:
                self.walk(node.body, guard, type_checking, lazy)
            elif kind in _MATCH_KINDS:
                for case in node.cases:
                    self.walk(case.body, guard, type_checking, lazy)


_TRY_KINDS = tuple(getattr(ast, n) for n in ("Try", "TryStar") if hasattr(ast, n))
_LOOP_KINDS = (ast.For, ast.AsyncFor, ast.While)
_WITH_KINDS = (ast.With, ast.AsyncWith)
_MATCH_KINDS = (ast.Match,)


def read_imports(path: Path, module: str, is_package: bool, *, eager: bool = False) -> list[ImportRef]:
    """Import statements of one file; an unreadable or unparsable file has none (the rule pass reports it).
    eager: only those that run at import time (imports_from_tree)."""
    from interpkit.analyzer.plumbing.gc_pause import gc_paused

    with gc_paused():   # the tree has no cycles: the collector would only walk it (a third of the cost)
        # the tree must be gone before the collector resumes, or its first young-generation
        # pass walks every node: _read_file's frame holds it, and is freed on return
        return _read_file(path, module, is_package, eager)


def _read_file(path: Path, module: str, is_package: bool, eager: bool) -> list[ImportRef]:
    try:
        data = Path(path).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(data, filename=str(path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return imports_from_tree(tree, module, is_package, source=_decoded(data), eager=eager)


def _decoded(data: bytes) -> str | None:
    """The text the parser read from `data` (its coding cookie honoured); None if that fails."""
    if data.isascii() and b"coding" not in data[:400]:
        return data.decode("ascii")
    try:
        import importlib.util

        return importlib.util.decode_source(data)
    except (SyntaxError, LookupError, UnicodeDecodeError, ValueError):
        return None


def imports_from_tree(tree: ast.AST, module: str, is_package: bool, *, source: str | None = None,
                      eager: bool = False) -> list[ImportRef]:
    """read_imports on an already parsed file (the rule pass parses each file once for both).

    With the file's `source` text, a file that cannot call import_module/__import__ is read
    from its statements alone (_StatementWalk: same refs, several times faster); without it,
    or when it can, every node is visited.

    eager: only the refs that are neither lazy nor conditional, exactly those of the full
    reading in the same order (the graph follows no other in an installed package)."""
    if source is not None and isinstance(tree, ast.Module) and not _may_call_import(source):
        walk = _StatementWalk(module, is_package, eager, _may_spell(source, "TYPE_CHECKING"))
        walk.walk(tree.body, False, False, False)
        return walk.refs
    refs = _visit_every_node(tree, module, is_package)
    # the visitor's fallback for very deep expressions drops every context, so its refs are
    # filtered here rather than its walk pruned
    top = module.partition(".")[0]
    return [r for r in refs if runs_at_import(r, top)] if eager else refs


def runs_at_import(ref: ImportRef, top: str) -> bool:
    """Does the graph follow this import of an installed module (whose top-level package is
    `top`)? What runs when the module is imported: neither inside a function nor for type
    checking, and not guarded by try/except ImportError, or the graph of `import torch`
    swallows IPython, pytest and everything else it can use; but a guarded import of the
    package's own module is followed (detectron2's `try: from detectron2 import _C`): it is
    part of the same install, its compiled part, and it loads whenever it can."""
    if ref.lazy or ref.type_checking:
        return False
    return not ref.conditional or ref.name.partition(".")[0] == top


def _visit_every_node(tree: ast.AST, module: str, is_package: bool) -> list[ImportRef]:
    collector = _ImportCollector(module, is_package)
    try:
        collector.visit(tree)
    except RecursionError:
        # generated files with very deep expressions: fall back to a flat walk (no guard context)
        collector = _ImportCollector(module, is_package)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                collector.visit_Import(node)
            elif isinstance(node, ast.ImportFrom):
                collector.visit_ImportFrom(node)
    return collector.refs


# -- reading the graph's files: cached, and ahead of the walk on every core -------------------

IMPORTS_CACHE = "imports-v1"
READ_AHEAD_THRESHOLD = 24   # files not in the cache before worker processes pay for their start-up
READ_CHUNK = 8              # files per worker task: a round trip per eight, and short waits for the walk
LOOKUP_BATCH = 64           # files announced ahead looked up in the cache with one query


def refs_to_rows(refs: list[ImportRef]) -> list[list]:
    return [[r.name, r.line, r.conditional, r.type_checking, r.lazy, list(r.from_names)] for r in refs]


def refs_from_rows(rows: list[list]) -> list[ImportRef]:
    return [ImportRef(name, line, conditional, type_checking, lazy, tuple(from_names))
            for name, line, conditional, type_checking, lazy, from_names in rows]


def _read_chunk(items: list[tuple[str, str, bool, bool]]) -> list[str]:
    """The refs of each file, as the cache stores them (JSON rows): cheap to send back."""
    return [json.dumps(refs_to_rows(read_imports(Path(path), module, is_package, eager=eager)))
            for path, module, is_package, eager in items]


class ImportReader:
    """imports_of for build_import_graph: the import statements of a file read as a module, from
    the scan cache (`imports-v1.sqlite`, keyed by the file's real path, size and mtime, the module
    name, the eager flag, the Python version and this file's code) or else parsed.

    The walk tells the reader each module it queues (ahead); they are looked up in the cache
    in batches, and once more than a few miss it, they are parsed in worker processes, eight
    to a task, in queue order while the walk goes on; whenever the walk asks for a file, all
    it announced before is looked up and sent first, so the workers never wait on a batch to
    fill. The graph waits for a parse only when it has caught up with them. The answers, and
    so the graph, are the same as reading each file when its turn comes."""

    def __init__(self, *, cache: bool = True, jobs: int | None = None) -> None:
        from interpkit.analyzer.plumbing.cache import Store, code_fingerprint

        self.store = Store(IMPORTS_CACHE, enabled=cache)
        self.print_ = code_fingerprint([Path(__file__)], f"python{sys.version_info[:2]}") if self.store.enabled else ""
        self.jobs = (os.cpu_count() or 1) if jobs is None else jobs
        self.fresh: list[tuple[str, str]] = []
        # an item is (path, module, is_package, eager)
        self.announced: dict[tuple, None] = {}          # told ahead, not yet looked up
        self.ready: dict[tuple, list[ImportRef]] = {}   # from the cache
        self.missed: set[tuple] = set()                 # looked up ahead, not cached
        self.unsent: dict[tuple, None] = {}             # missed, not yet with a worker
        self.pending: dict[tuple, tuple[object, int]] = {}   # (future of a chunk, index in it)
        self.keys: dict[tuple, str | None] = {}
        self.pool = None
        self.owned = False   # the pool is ours to shut down (not lent by the rule pass)

    def _key(self, item: tuple) -> str | None:
        from interpkit.analyzer.plumbing.cache import file_key

        if not self.store.enabled:
            return None
        key = self.keys.get(item)
        if key is None:
            path, module, is_package, eager = item
            key = self.keys[item] = file_key(path, module, is_package, self.print_, *(("eager",) if eager else ()))
        return key

    @staticmethod
    def _loaded(cached) -> list[ImportRef] | None:
        try:
            return refs_from_rows(json.loads(cached))
        except (ValueError, TypeError):
            return None   # a damaged entry: read the file again

    def _cached(self, item: tuple) -> list[ImportRef] | None:
        key = self._key(item)
        cached = self.store.get(key) if key else None
        return None if cached is None else self._loaded(cached)

    def ahead(self, path: Path, module: str, is_package: bool, eager: bool = False) -> None:
        """The walk will ask for this file later: look it up soon, and parse it early if missing."""
        item = (path, module, is_package, eager)
        if item in self.announced or item in self.ready or item in self.missed:
            return
        self.announced[item] = None
        if len(self.announced) >= LOOKUP_BATCH:
            self._look_up()
            if self.pool is not None:
                self._send(whole_chunks=True)

    def _look_up(self) -> None:
        items, self.announced = list(self.announced), {}
        keys = [self._key(item) for item in items]
        found = self.store.get_many([key for key in keys if key]) if self.store.enabled else {}
        for item, key in zip(items, keys):
            cached = found.get(key) if key else None
            refs = None if cached is None else self._loaded(cached)
            if refs is not None:
                self.ready[item] = refs
            else:
                self.missed.add(item)
                self.unsent[item] = None
        if self.pool is None and self.jobs > 1 and len(self.unsent) >= READ_AHEAD_THRESHOLD:
            self._start_pool()

    def _start_pool(self) -> None:
        from interpkit.analyzer.plumbing.workers import worker_pool

        try:
            # inside lent_workers() the rule pass's workers, already started (spawned, not forked)
            self.pool, self.owned = worker_pool(self.jobs)
        except (OSError, ValueError, ImportError):
            self.jobs = 1

    def _send(self, *, whole_chunks: bool) -> None:
        """Unsent files to the workers in queue order, READ_CHUNK to a task (the last one short
        unless whole_chunks)."""
        items = list(self.unsent)
        end = len(items) - len(items) % READ_CHUNK if whole_chunks else len(items)
        for start in range(0, end, READ_CHUNK):
            chunk = items[start:start + READ_CHUNK]
            try:
                future = self.pool.submit(_read_chunk, [(str(path), module, is_package, eager)
                                                        for path, module, is_package, eager in chunk])
            except Exception:  # noqa: BLE001 - a broken pool: what is left is read here
                self.pool, self.jobs = None, 1
                self.unsent = {}
                return
            for index, item in enumerate(chunk):
                self.pending[item] = (future, index)
                del self.unsent[item]

    def __call__(self, path: Path, module: str, is_package: bool, eager: bool = False) -> list[ImportRef]:
        item = (path, module, is_package, eager)
        if item in self.announced or (self.pool is not None and self.announced):
            self._look_up()   # everything announced so far, so the workers are not left waiting
        refs = self.ready.pop(item, None)
        if refs is not None:
            return refs
        if item not in self.missed:
            refs = self._cached(item)   # not announced ahead: look it up now
            if refs is not None:
                return refs
        if self.pool is not None and self.unsent:
            self._send(whole_chunks=False)
        self.unsent.pop(item, None)
        text = None
        found = self.pending.pop(item, None)
        if found is not None:
            try:
                text = found[0].result()[found[1]]
                refs = refs_from_rows(json.loads(text))
            except Exception:  # noqa: BLE001 - a worker that died: read the file here instead
                text = None
        if text is None:
            refs = read_imports(path, module, is_package, eager=eager)
        key = self._key(item)
        if key:
            self.fresh.append((key, text if text is not None else json.dumps(refs_to_rows(refs))))
        return refs

    def __enter__(self) -> "ImportReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            if self.owned:
                self.pool.shutdown(wait=True, cancel_futures=True)
            else:   # lent: what is still queued for it is not wanted any more
                for future, _ in self.pending.values():
                    future.cancel()
            self.pool = None
        self.pending.clear()
        self.store.put_many(self.fresh)
        self.fresh = []
        self.store.close()


class _Resolver:
    """find_spec without importing, as `import` searches: each finder of sys.meta_path in turn
    (PathFinder over the search path, then what installs put there, such as setuptools'
    `__editable___*_finder` of an editable install); parents' `submodule_search_locations`
    come from their own specs. The built-in and frozen importers are left to _classify."""

    def __init__(self, search_path: list[str], target=None) -> None:
        self.search_path = search_path
        self.target = target
        self.specs: dict[str, importlib.machinery.ModuleSpec | None] = {}
        if target is not None:
            # another Python (target_python): only its path search, with its suffixes; the
            # running Python's own finders (editable installs) belong to the running Python
            self.finders = [_TargetPathFinder(target.extension_suffixes)]
            return
        skip = (importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter)
        self.finders = [f for f in sys.meta_path if f not in skip]
        if importlib.machinery.PathFinder not in self.finders:
            self.finders.insert(0, importlib.machinery.PathFinder)

    def find(self, name: str) -> importlib.machinery.ModuleSpec | None:
        if name in self.specs:
            return self.specs[name]
        self.specs[name] = None  # guards against cycles through odd finders
        parent, _, _ = name.rpartition(".")
        if parent:
            parent_spec = self.find(parent)
            if parent_spec is None:
                return None
            locations = _search_locations(parent_spec)
        spec = None
        for finder in self.finders:
            try:
                if finder is importlib.machinery.PathFinder or type(finder) is _TargetPathFinder:
                    if parent and not locations:
                        continue
                    spec = finder.find_spec(name, locations if parent else self.search_path)
                else:
                    find_spec = getattr(finder, "find_spec", None)
                    spec = find_spec(name, locations if parent else None) if find_spec else None
            except (ImportError, ValueError, KeyError, AttributeError, OSError, TypeError):
                spec = None
            if spec is not None:
                break
        self.specs[name] = spec
        return spec


class _TargetPathFinder:
    """PathFinder.find_spec for another Python: a FileFinder per folder built with that Python's
    extension suffixes (PathFinder's own come from sys.path_hooks, with ours, and would miss
    `*.cpython-314-*.so`), namespace portions gathered the way PathFinder gathers them."""

    def __init__(self, extension_suffixes: tuple[str, ...]) -> None:
        machinery = importlib.machinery
        self.loaders = ((machinery.ExtensionFileLoader, list(extension_suffixes)),
                        (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
                        (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES))
        self.folders: dict[str, importlib.machinery.FileFinder | None] = {}

    def _finder(self, entry: str):
        if entry not in self.folders:
            self.folders[entry] = importlib.machinery.FileFinder(entry, *self.loaders) if os.path.isdir(entry) else None
        return self.folders[entry]

    def find_spec(self, name: str, path: list[str]) -> importlib.machinery.ModuleSpec | None:
        portions: list[str] = []
        for entry in path:
            finder = self._finder(entry or ".")
            spec = finder.find_spec(name) if finder is not None else None
            if spec is None:
                continue
            if spec.loader is not None:
                return spec
            portions.extend(spec.submodule_search_locations or ())
        if not portions:
            return None
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = portions
        return spec


def find_module_spec(name: str, search_path: list[str] | None = None) -> importlib.machinery.ModuleSpec | None:
    """The spec `import name` would use (no module is imported, none of its code runs)."""
    return _Resolver(list(sys.path) if search_path is None else search_path).find(name)


def _search_locations(spec) -> list[str]:
    locations = spec.submodule_search_locations
    if locations is None:
        return []
    try:
        return list(locations)
    except (KeyError, AttributeError, TypeError):
        # a namespace package's _NamespacePath recomputes itself from sys.modules, which we never
        # populate (nothing is imported): use the paths it was created with
        return list(getattr(locations, "_path", []))


def _classify(name: str, spec, target=None) -> tuple[ModuleKind, Path | None, bool]:
    """The module's kind, file and package-ness; `target` (target_python.TargetPython): the
    stdlib and extension suffixes are that Python's."""
    top = name.partition(".")[0]
    if spec is None:
        if target is not None:
            return (ModuleKind.STDLIB if target.is_stdlib(top, None) else ModuleKind.MISSING), None, False
        if top in sys.builtin_module_names or name in sys.builtin_module_names:
            return ModuleKind.STDLIB, None, False
        if top in sys.stdlib_module_names:
            return ModuleKind.STDLIB, None, False
        return ModuleKind.MISSING, None, False
    is_package = spec.submodule_search_locations is not None
    origin = spec.origin if spec.has_location else None
    path = Path(origin) if origin else None
    if target.is_stdlib(top, origin) if target is not None else top in sys.stdlib_module_names:
        return ModuleKind.STDLIB, path, is_package
    if path is None:
        return ModuleKind.NAMESPACE, None, True
    if origin.endswith(target.extension_suffixes if target is not None else EXTENSION_SUFFIXES):
        return ModuleKind.EXTENSION, path, is_package
    if origin.endswith((".py", ".pyw")):
        return ModuleKind.PYTHON, path, is_package
    return ModuleKind.PYTHON, path, is_package   # .pyc-only modules: treat as Python without source


def build_import_graph(entries: list[Path], config: Config, *, max_modules: int = 50_000,
                       known_imports: dict[Path, tuple[tuple[str, bool], list[ImportRef]]] | None = None,
                       imports_of=None, module_names=None) -> ImportGraph:
    """Walk imports breadth-first from the entry files (or package folders).

    Installed (non-local) packages are walked only when `config.follow_imports` is set, and
    then only through imports that run at import time (module level, not guarded by
    try/except ImportError or TYPE_CHECKING); the model's own files are followed everywhere.
    Standard-library modules are recorded but never walked.

    imports_of(path, module, is_package, eager=...) reads a file (read_imports, or an
    ImportReader, whose `ahead` hears of each file as it is queued); eager is set for an
    installed module, whose lazy and conditional imports the walk would skip anyway.
    """
    graph = ImportGraph()
    local_roots: list[Path] = []
    queue: deque[str] = deque()
    entry_specs: dict[str, tuple[Path, bool]] = {}
    module_names = module_names or module_name_for
    for entry in entries:
        entry = entry if isinstance(entry, Path) else Path(entry)
        name, root = module_names(entry)
        if root not in local_roots:
            local_roots.append(root)
        if entry.is_dir():
            init = entry / "__init__.py"
            entry_specs[name] = (init, True)
        else:
            entry_specs[name] = (resolve(entry), entry.name == "__init__.py")
    search_path = [str(r) for r in local_roots] + [str(resolve(p)) for p in config.python_paths]
    target_python = config.target   # another Python the tree is built for (target_python), or None
    host_path = target_python.search_path if target_python is not None else sys.path
    search_path += [p for p in host_path if p and p not in search_path]
    graph.search_path = search_path
    resolver = _Resolver(search_path, target_python)
    graph.local_prefixes = local_prefixes = tuple(str(r) + os.sep for r in local_roots)
    graph.shortest = len(min(local_prefixes, key=len)) if local_prefixes else 0
    # An editable install's checkout beside the model (inside its folder) is installed code:
    # Python imports it through the install, and the serving host has it installed too. The
    # model's own project, installed editable while the model lives in it, stays the model's.
    real_roots = [resolve(r) for r in local_roots]
    graph.installed_prefixes = tuple(str(folder) + os.sep for folder in editable_projects(host_path)
                                     if not any(r == folder or folder in r.parents for r in real_roots))
    is_local = graph.is_local

    read = imports_of or read_imports
    read_ahead = getattr(imports_of, "ahead", None)
    follow = config.follow_imports
    known_imports = known_imports or {}
    reads: dict[str, bool] = {}   # module -> is a .py file the walk reads (local, or installed and followed)

    def announce(node: ModuleNode) -> None:
        """A module joined the queue: a reader that reads ahead (ImportReader) may start on it."""
        path = node.path
        readable = node.kind is ModuleKind.PYTHON and path is not None and _is_py(path) and (node.local or follow)
        reads[node.name] = readable
        if not readable or read_ahead is None:
            return
        known = known_imports.get(path)
        if known is None or known[0] != (node.name, node.is_package):
            read_ahead(path, node.name, node.is_package, eager=not node.local)

    nodes, edges, specs = graph.nodes, graph.edges, resolver.specs
    for name, (path, is_package) in entry_specs.items():
        is_file = path.is_file()
        nodes[name] = ModuleNode(name, ModuleKind.PYTHON if is_file else ModuleKind.NAMESPACE,
                                 path if is_file else None, is_package, local=True,
                                 conditional=False, type_checking_only=False)
        graph.roots.append(name)
        queue.append(name)
        announce(nodes[name])
        # the packages above an entry run their __init__ too
        parts = name.split(".")
        for i in range(1, len(parts)):
            _ensure(graph, resolver, ".".join(parts[:i]), name, is_local, queue,
                    conditional=False, type_checking=False, announce=announce)

    walked: set[str] = set()
    while queue and len(nodes) < max_modules:
        name = queue.popleft()
        if name in walked:
            continue
        walked.add(name)
        if not reads[name]:
            continue
        node = nodes[name]
        local = node.local
        known = known_imports.get(node.path)
        # known_imports: read by the parallel rule pass, for (path, module name, is_package) as here
        refs = known[1] if known is not None and known[0] == (name, node.is_package) else \
            read(node.path, name, node.is_package, eager=not local)
        importer_edges = None
        for ref in refs:
            conditional = ref.conditional
            if not local and (ref.lazy or conditional) and not runs_at_import(ref, node.top_level):
                continue
            type_checking = ref.type_checking
            imported = ref.name
            targets = []   # the name and each package above it: a.b.c -> a, a.b, a.b.c
            dot = imported.find(".")
            while dot >= 0:
                targets.append(imported[:dot])
                dot = imported.find(".", dot + 1)
            targets.append(imported)
            if ref.from_names:
                # `from a import b`: b is a target when it is a submodule (found as a.b)
                spec = specs[imported] if imported in specs else resolver.find(imported)
                if spec is not None:
                    for sub in ref.from_names:
                        full = f"{imported}.{sub}"
                        if (specs[full] if full in specs else resolver.find(full)) is not None:
                            targets.append(full)
            if importer_edges is None:
                importer_edges = edges.setdefault(name, set())
            for target in targets:
                # _ensure, inline: most targets are known already
                importer_edges.add(target)
                found = nodes.get(target)
                if found is None:
                    found = _new_node(graph, resolver, target, name, is_local, queue, announce)
                found.conditional = found.conditional and conditional
                found.type_checking_only = found.type_checking_only and type_checking
    from interpkit.analyzer.source.op_loads import find_op_library_loads

    graph.op_libraries = find_op_library_loads(graph)
    return graph


def _is_py(path: Path) -> bool:
    """path.suffix == ".py", from the name alone (the suffix of `.py` itself is empty)."""
    name = path.name
    return len(name) > 3 and name.endswith(".py")


def _ensure(graph: ImportGraph, resolver: _Resolver, target: str, importer: str, is_local, queue,
            *, conditional: bool, type_checking: bool, announce=None) -> None:
    graph.edges.setdefault(importer, set()).add(target)
    node = graph.nodes.get(target)
    if node is None:
        node = _new_node(graph, resolver, target, importer, is_local, queue, announce)
    node.conditional = node.conditional and conditional
    node.type_checking_only = node.type_checking_only and type_checking


def _new_node(graph: ImportGraph, resolver: _Resolver, target: str, importer: str, is_local, queue,
              announce) -> ModuleNode:
    try:
        spec = resolver.find(target)
    except (ImportError, ValueError, AttributeError, OSError):
        spec = None
    kind, path, is_package = _classify(target, spec, resolver.target)
    node = ModuleNode(target, kind, path, is_package, local=is_local(path))
    graph.nodes[target] = node
    if target != importer:
        graph.parent.setdefault(target, importer)
    queue.append(target)
    if announce is not None:
        announce(node)
    return node


def package_has_extension(folder: Path, *, limit: int = 20_000) -> bool:
    """Does a package folder contain a compiled extension anywhere below it (without importing)?"""
    seen = 0
    for _root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for file in files:
            if file.endswith(EXTENSION_SUFFIXES):
                return True
        seen += len(files)
        if seen > limit:
            break
    return False
