"""Import graph of a model: from its entry files through installed packages, down to the .so files.

Modules are found with `importlib.machinery.PathFinder` over the model's own folders,
`config.python_paths` and `sys.path`, exactly as `import` would search them, but nothing is
ever imported or executed: import statements are read from the source. They are read with
CPython's `ast` rather than LibCST because the graph may cover thousands of files (all of
torch) and only the import statements matter here; the rule pass uses LibCST.
"""
from __future__ import annotations

import ast
import enum
import importlib.machinery
import os
import sys
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from interpkit.analyzer.config import Config
from interpkit.analyzer.modules import enclosing_packages

EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


class ModuleKind(str, enum.Enum):
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


def module_name_for(path: Path) -> tuple[str, Path]:
    """(dotted name, sys.path root) of a source file or package folder, walking up through __init__.py."""
    path = Path(path).resolve()
    if path.is_dir():
        leaf, folder = path.name, path.parent
    elif path.name == "__init__.py":
        leaf, folder = path.parent.name, path.parent.parent
    else:
        leaf, folder = path.stem, path.parent
    packages, root = enclosing_packages(folder)
    return ".".join(reversed([leaf, *packages])), root


def _is_import_guard(handler_types: list[ast.expr | None]) -> bool:
    for node in handler_types:
        if node is None:
            return True  # bare except
        names = [e for e in (node.elts if isinstance(node, ast.Tuple) else [node])]
        for name in names:
            text = ast.unparse(name)
            if text.split(".")[-1] in ("ImportError", "ModuleNotFoundError", "Exception", "BaseException"):
                return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test).split(".")[-1] == "TYPE_CHECKING"


class _ImportCollector(ast.NodeVisitor):
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
        if node.level:
            base = self.package.split(".") if self.package else []
            if node.level - 1 > len(base):
                return  # relative import beyond the top: Python refuses it too
            base = base[: len(base) - (node.level - 1)]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        self._add(name, node.lineno, tuple(a.name for a in node.names if a.name != "*"))

    def visit_Call(self, node: ast.Call) -> None:
        # literal importlib.import_module("x") / __import__("x"): torch.package follows these too
        func = node.func
        func_name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if func_name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and not node.args[0].value.startswith("."):
            self._add(node.args[0].value, node.lineno)
        self.generic_visit(node)


def read_imports(path: Path, module: str, is_package: bool) -> list[ImportRef]:
    """Import statements of one file; an unreadable or unparsable file has none (the rule pass reports it)."""
    try:
        data = Path(path).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(data, filename=str(path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return imports_from_tree(tree, module, is_package)


def imports_from_tree(tree: ast.AST, module: str, is_package: bool) -> list[ImportRef]:
    """read_imports on an already parsed file (the rule pass parses each file once for both)."""
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


class _Resolver:
    """find_spec without importing: parents' `submodule_search_locations` come from their own specs."""

    def __init__(self, search_path: list[str]) -> None:
        self.search_path = search_path
        self.specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find(self, name: str) -> importlib.machinery.ModuleSpec | None:
        if name in self.specs:
            return self.specs[name]
        self.specs[name] = None  # guards against cycles through odd finders
        parent, _, _ = name.rpartition(".")
        try:
            if parent:
                parent_spec = self.find(parent)
                locations = _search_locations(parent_spec) if parent_spec else []
                spec = importlib.machinery.PathFinder.find_spec(name, locations) if locations else None
            else:
                spec = importlib.machinery.PathFinder.find_spec(name, self.search_path)
        except (ImportError, ValueError, KeyError, AttributeError, OSError, TypeError):
            spec = None
        self.specs[name] = spec
        return spec


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


def _classify(name: str, spec) -> tuple[ModuleKind, Path | None, bool]:
    top = name.partition(".")[0]
    if spec is None:
        if top in sys.builtin_module_names or name in sys.builtin_module_names:
            return ModuleKind.STDLIB, None, False
        if top in sys.stdlib_module_names:
            return ModuleKind.STDLIB, None, False
        return ModuleKind.MISSING, None, False
    is_package = spec.submodule_search_locations is not None
    origin = spec.origin if spec.has_location else None
    path = Path(origin) if origin else None
    if top in sys.stdlib_module_names:
        return ModuleKind.STDLIB, path, is_package
    if path is None:
        return ModuleKind.NAMESPACE, None, True
    if origin.endswith(EXTENSION_SUFFIXES):
        return ModuleKind.EXTENSION, path, is_package
    if origin.endswith((".py", ".pyw")):
        return ModuleKind.PYTHON, path, is_package
    return ModuleKind.PYTHON, path, is_package   # .pyc-only modules: treat as Python without source


def build_import_graph(entries: list[Path], config: Config, *, max_modules: int = 50_000,
                       known_imports: dict[Path, tuple[tuple[str, bool], list[ImportRef]]] | None = None,
                       imports_of=None) -> ImportGraph:
    """Walk imports breadth-first from the entry files (or package folders).

    Installed (non-local) packages are walked only when `config.follow_imports` is set, and
    then only through imports that run at import time (module level, not guarded by
    try/except ImportError or TYPE_CHECKING); the model's own files are followed everywhere.
    Standard-library modules are recorded but never walked.
    """
    graph = ImportGraph()
    local_roots: list[Path] = []
    queue: deque[str] = deque()
    entry_specs: dict[str, tuple[Path, bool]] = {}
    for entry in entries:
        entry = Path(entry)
        name, root = module_name_for(entry)
        if root not in local_roots:
            local_roots.append(root)
        if entry.is_dir():
            init = entry / "__init__.py"
            entry_specs[name] = (init, True)
        else:
            entry_specs[name] = (entry.resolve(), entry.name == "__init__.py")
    search_path = [str(r) for r in local_roots] + [str(Path(p).resolve()) for p in config.python_paths]
    search_path += [p for p in sys.path if p and p not in search_path]
    graph.search_path = search_path
    resolver = _Resolver(search_path)
    local_prefixes = tuple(str(r) + os.sep for r in local_roots)

    def is_local(path: Path | None) -> bool:
        if path is None:
            return False
        text = str(path.resolve())
        return text.startswith(local_prefixes) and "site-packages" not in text[len(min(local_prefixes, key=len)):]

    for name, (path, is_package) in entry_specs.items():
        graph.nodes[name] = ModuleNode(name, ModuleKind.PYTHON if path.is_file() else ModuleKind.NAMESPACE,
                                       path if path.is_file() else None, is_package, local=True,
                                       conditional=False, type_checking_only=False)
        graph.roots.append(name)
        queue.append(name)
        # the packages above an entry run their __init__ too
        parts = name.split(".")
        for i in range(1, len(parts)):
            _ensure(graph, resolver, ".".join(parts[:i]), name, is_local, queue,
                    conditional=False, type_checking=False)

    walked: set[str] = set()
    while queue and len(graph.nodes) < max_modules:
        name = queue.popleft()
        if name in walked:
            continue
        walked.add(name)
        node = graph.nodes[name]
        if node.kind is not ModuleKind.PYTHON or node.path is None or node.path.suffix != ".py":
            continue
        if not node.local and not config.follow_imports:
            continue
        known = known_imports.get(node.path) if known_imports else None
        # known_imports: read by the parallel rule pass, for (path, module name, is_package) as here
        refs = known[1] if known is not None and known[0] == (name, node.is_package) else \
            (imports_of or read_imports)(node.path, name, node.is_package)
        for ref in refs:
            if not node.local and (ref.lazy or ref.conditional):
                # in installed packages follow only what runs at import time, or the graph
                # of `import torch` swallows IPython, pytest and everything else it can use
                continue
            targets = []
            parts = ref.name.split(".")
            targets.extend(".".join(parts[: i + 1]) for i in range(len(parts)))
            for sub in ref.from_names:
                full = f"{ref.name}.{sub}"
                if resolver.find(ref.name) is not None and resolver.find(full) is not None:
                    targets.append(full)
            for target in targets:
                _ensure(graph, resolver, target, name, is_local, queue,
                        conditional=ref.conditional, type_checking=ref.type_checking)
    from interpkit.analyzer.source.op_loads import find_op_library_loads

    graph.op_libraries = find_op_library_loads(graph)
    return graph


def _ensure(graph: ImportGraph, resolver: _Resolver, target: str, importer: str, is_local, queue,
            *, conditional: bool, type_checking: bool) -> None:
    graph.edges.setdefault(importer, set()).add(target)
    node = graph.nodes.get(target)
    if node is None:
        try:
            spec = resolver.find(target)
        except (ImportError, ValueError, AttributeError, OSError):
            spec = None
        kind, path, is_package = _classify(target, spec)
        node = ModuleNode(target, kind, path, is_package, local=is_local(path))
        graph.nodes[target] = node
        if target != importer:
            graph.parent.setdefault(target, importer)
        queue.append(target)
    node.conditional = node.conditional and conditional
    node.type_checking_only = node.type_checking_only and type_checking


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
