"""Op libraries a model loads with `torch.ops.load_library(path)` / `torch.classes.load_library(path)`.

Such a library has no `PyInit_` and is never imported, so the import graph cannot see it;
its path is an expression. This module evaluates that expression statically, without
running anything, over what packages build such paths from: string literals, `__file__`,
`os.path` (join, dirname, abspath, realpath, normpath, basename), `pathlib.Path` (`/`,
`.parent`, `.resolve()`, `.joinpath`), f-strings, `%`/`+`/`.format`, `glob.glob`,
`sysconfig.get_config_var("EXT_SUFFIX")`, `importlib.machinery.FileFinder(dir,
...).find_spec(name).origin` (how a package finds `<name><EXTENSION_SUFFIX>` beside itself),
module-level constants, and calls of the package's own helper functions (evaluated with
their arguments bound). When the load sits in a function whose parameter names the library
(`def _load_library(lib_name): ... load_library(_get_extension_path(lib_name))`), every call
of that function with known arguments, in its module or in a module importing it, is one
load. Nothing here knows any package by name.
"""
from __future__ import annotations

import ast
import glob as globlib
import importlib.machinery
import logging
import os
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
MAX_DEPTH = 8
LOAD_OWNERS = ("ops", "classes")


@dataclass(frozen=True)
class OpLibraryLoad:
    module: str                 # the module whose code calls load_library
    source: Path                # that module's file
    line: int
    call: str                   # torch.ops.load_library or torch.classes.load_library
    expression: str             # the argument as written
    path: Path | None           # where it points; None when the expression is not known statically
    exists: bool
    at_import: bool             # runs when the module is imported (module level, or a call from it)

    def to_json(self) -> dict:
        out = {"module": self.module, "source": str(self.source), "line": self.line, "call": self.call,
               "expression": self.expression, "exists": self.exists, "at_import": self.at_import}
        if self.path is not None:
            out["path"] = str(self.path)
        return out


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class _Finder:          # importlib.machinery.FileFinder(dir, ...)
    folder: str


@dataclass(frozen=True)
class _Spec:            # what FileFinder.find_spec returned; origin None: not found
    origin: str | None
    wanted: str


@dataclass(frozen=True)
class _ModuleRef:       # `import os` / `import numpy as np`
    name: str


@dataclass(frozen=True)
class _Function:
    module: "_Module"
    node: ast.FunctionDef


def _known(*values) -> bool:
    return all(isinstance(v, str) for v in values)


class _Module:
    """One parsed module: its top-level functions, constants and import aliases."""

    def __init__(self, name: str, path: Path, tree: ast.Module, is_package: bool) -> None:
        self.name, self.path, self.tree = name, path, tree
        self.package = name if is_package else name.rpartition(".")[0]
        self.functions: dict[str, ast.FunctionDef] = {}
        self.constants: dict[str, ast.expr] = {}
        self.imports: dict[str, tuple[str, str | None]] = {}   # local -> (module, attribute or None)
        assigned: dict[str, int] = {}
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[stmt.name] = stmt
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                target = stmt.targets[0].id
                assigned[target] = assigned.get(target, 0) + 1
                self.constants[target] = stmt.value
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        self.imports[alias.asname] = (alias.name, None)
                    else:
                        top = alias.name.partition(".")[0]
                        self.imports[top] = (top, None)
            elif isinstance(stmt, ast.ImportFrom):
                base = self.absolute(stmt.module, stmt.level)
                for alias in stmt.names:
                    if alias.name != "*":
                        self.imports[alias.asname or alias.name] = (base, alias.name)
        # A name bound more than once at module level has no single value.
        for target, count in assigned.items():
            if count > 1:
                self.constants.pop(target, None)

    def absolute(self, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        parts = self.package.split(".") if self.package else []
        parts = parts[: len(parts) - (level - 1)] if level - 1 <= len(parts) else []
        return ".".join(parts + ([module] if module else []))


class Evaluator:
    """Static values of path expressions across the modules of one import graph."""

    def __init__(self, module_source) -> None:
        # module_source(name) -> (path, is_package) of a module, or None when not Python source
        self._source_of = module_source
        self._modules: dict[str, _Module | None] = {}

    def module(self, name: str) -> _Module | None:
        if name not in self._modules:
            self._modules[name] = None
            found = self._source_of(name)
            if found is not None:
                path, is_package = found
                tree = _parse(path)
                if tree is not None:
                    self._modules[name] = _Module(name, path, tree, is_package)
        return self._modules[name]

    def path_of(self, name: str) -> Path | None:
        found = self._source_of(name)
        return found[0] if found else None

    def add(self, name: str, path: Path, tree: ast.Module, is_package: bool = False) -> _Module:
        self._modules[name] = _Module(name, path, tree, is_package)
        return self._modules[name]

    # -- names ---------------------------------------------------------------------------
    def qualified(self, node: ast.expr, module: _Module, env: dict) -> str | None:
        """`os.path.join` for `osp.join` after `import os.path as osp`; None for local values."""
        if isinstance(node, ast.Name):
            if node.id in env:
                return None
            if node.id in module.imports:
                base, attr = module.imports[node.id]
                return f"{base}.{attr}" if attr else base
            if node.id in module.functions or node.id in module.constants:
                return f"{module.name}.{node.id}"
            return node.id
        if isinstance(node, ast.Attribute):
            inner = self.qualified(node.value, module, env)
            return f"{inner}.{node.attr}" if inner else None
        return None

    def resolve_global(self, qualified: str, depth: int):
        """A module-level function or constant named by its dotted name, or UNKNOWN."""
        head, _, attr = qualified.rpartition(".")
        if not head:
            return UNKNOWN
        module = self.module(head)
        if module is None:
            return UNKNOWN
        if attr in module.functions:
            return _Function(module, module.functions[attr])
        if attr in module.constants:
            return self.evaluate(module.constants[attr], module, {}, depth + 1)
        if attr in module.imports:
            base, name = module.imports[attr]
            return self.resolve_global(f"{base}.{name}", depth + 1) if name else _ModuleRef(base)
        return UNKNOWN

    # -- expressions ---------------------------------------------------------------------
    def evaluate(self, node: ast.expr, module: _Module, env: dict, depth: int = 0):
        if depth > MAX_DEPTH:
            return UNKNOWN
        try:
            return self._evaluate(node, module, env, depth)
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, RecursionError):
            return UNKNOWN

    def _evaluate(self, node: ast.expr, module: _Module, env: dict, depth: int):
        ev = lambda n: self.evaluate(n, module, env, depth + 1)  # noqa: E731
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, (str, int)) else UNKNOWN
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id == "__file__":
                return str(module.path)
            if node.id == "__name__":
                return module.name
            if node.id == "__package__":
                return module.package
            if node.id in module.constants:
                return self.evaluate(module.constants[node.id], module, {}, depth + 1)
            if node.id in module.functions:
                return _Function(module, module.functions[node.id])
            if node.id in module.imports:
                base, attr = module.imports[node.id]
                return self.resolve_global(f"{base}.{attr}", depth) if attr else _ModuleRef(base)
            return UNKNOWN
        if isinstance(node, ast.JoinedStr):
            parts = []
            for part in node.values:
                value = ev(part.value) if isinstance(part, ast.FormattedValue) else ev(part)
                if not _known(value):
                    return UNKNOWN
                parts.append(value)
            return "".join(parts)
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add) and _known(left, right):
                return left + right
            if isinstance(node.op, ast.Div) and _known(left, right):   # pathlib's `/`
                return os.path.join(left, right)
            if isinstance(node.op, ast.Mod) and isinstance(left, str):
                args = tuple(ev(e) for e in node.right.elts) if isinstance(node.right, ast.Tuple) else (right,)
                return left % args if all(isinstance(a, (str, int)) for a in args) else UNKNOWN
            return UNKNOWN
        if isinstance(node, ast.Attribute):
            value = ev(node.value)
            if isinstance(value, _Spec) and node.attr == "origin":
                return value.origin if value.origin is not None else _Spec(None, value.wanted)
            if isinstance(value, str) and node.attr == "parent":
                return os.path.dirname(value)
            if isinstance(value, str) and node.attr == "name":
                return os.path.basename(value)
            if isinstance(value, _ModuleRef):
                return self._module_attribute(f"{value.name}.{node.attr}", depth)
            return UNKNOWN
        if isinstance(node, ast.Subscript):
            value, index = ev(node.value), ev(node.slice)
            if isinstance(value, list) and isinstance(index, int) and -len(value) <= index < len(value):
                return value[index]
            return UNKNOWN
        if isinstance(node, ast.Call):
            return self._call(node, module, env, depth)
        return UNKNOWN

    def _module_attribute(self, qualified: str, depth: int):
        if qualified == "os.sep":
            return os.sep
        if qualified == "os.name":
            return os.name
        return self.resolve_global(qualified, depth)

    def _call(self, node: ast.Call, module: _Module, env: dict, depth: int):
        args = [self.evaluate(a, module, env, depth + 1) for a in node.args if not isinstance(a, ast.Starred)]
        func = node.func
        # Methods of values we model.
        if isinstance(func, ast.Attribute):
            target = self.evaluate(func.value, module, env, depth + 1)
            if isinstance(target, _Finder) and func.attr == "find_spec" and args and _known(args[0]):
                return _find_extension(target.folder, args[0])
            if isinstance(target, str):
                if func.attr in ("resolve", "absolute"):
                    return os.path.abspath(target)
                if func.attr == "joinpath" and _known(*args):
                    return os.path.join(target, *args)
                if func.attr == "format" and all(isinstance(a, (str, int)) for a in args) and not node.keywords:
                    return target.format(*args)
                if func.attr == "with_name" and _known(*args):
                    return os.path.join(os.path.dirname(target), args[0])
                if func.attr == "with_suffix" and _known(*args):
                    return os.path.splitext(target)[0] + args[0]
        name = self.qualified(func, module, env)
        if name in _PURE and len(args) >= 1 and _known(*args):
            return _PURE[name](*args)
        if name in ("str", "os.fspath", "pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath") and args:
            if name.startswith("pathlib.") and len(args) > 1:
                return os.path.join(*args) if _known(*args) else UNKNOWN
            return args[0] if _known(args[0]) else UNKNOWN
        if name in ("importlib.resources.files", "importlib_resources.files") and args and _known(args[0]):
            # the folder of the named package (a Traversable; `/` and str() work on it as on a path)
            package = self.module(args[0])
            return os.path.dirname(str(package.path)) if package is not None else UNKNOWN
        if name == "glob.glob" and args and _known(args[0]):
            return sorted(globlib.glob(args[0]))
        if name == "sysconfig.get_config_var" and args and _known(args[0]) and args[0] == "EXT_SUFFIX":
            return sysconfig.get_config_var("EXT_SUFFIX")
        if name == "importlib.machinery.FileFinder" and args and _known(args[0]):
            return _Finder(args[0])
        # A function of the scanned code: evaluate its return value with the arguments bound.
        function = self.evaluate(func, module, env, depth + 1) if isinstance(func, (ast.Name, ast.Attribute)) else None
        if isinstance(function, _Function):
            bound = bind_arguments(function.node, node, lambda e: self.evaluate(e, module, env, depth + 1))
            return self.returned(function, bound, depth + 1)
        return UNKNOWN

    def returned(self, function: _Function, env: dict, depth: int):
        """The value of the first `return` the body reaches in straight-line order."""
        local = dict(env)
        for stmt in _straight_line(function.node.body):
            if isinstance(stmt, ast.Return):
                return self.evaluate(stmt.value, function.module, local, depth) if stmt.value else UNKNOWN
            _assign(stmt, local, lambda e: self.evaluate(e, function.module, local, depth))
        return UNKNOWN

    def locals_before(self, function: _Function, env: dict, line: int, depth: int = 0) -> dict:
        """Local values of `function` just before `line` (straight-line assignments only)."""
        local = dict(env)
        for stmt in _straight_line(function.node.body):
            if stmt.lineno >= line:
                break
            _assign(stmt, local, lambda e: self.evaluate(e, function.module, local, depth))
        return local


def _find_extension(folder: str, name: str) -> _Spec:
    """FileFinder(folder, (ExtensionFileLoader, EXTENSION_SUFFIXES)).find_spec(name)."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = os.path.join(folder, name + suffix)
        if os.path.isfile(candidate):
            return _Spec(candidate, name)
    return _Spec(None, os.path.join(folder, name + importlib.machinery.EXTENSION_SUFFIXES[-1]))


_PURE = {
    "os.path.join": os.path.join,
    "os.path.dirname": lambda p, *_: os.path.dirname(p),
    "os.path.abspath": lambda p, *_: os.path.abspath(p),
    "os.path.realpath": lambda p, *_: os.path.realpath(p),
    "os.path.normpath": lambda p, *_: os.path.normpath(p),
    "os.path.basename": lambda p, *_: os.path.basename(p),
    "os.path.expanduser": lambda p, *_: os.path.expanduser(p),
}


def bind_arguments(function: ast.FunctionDef, call: ast.Call, evaluate) -> dict:
    """Parameter name -> value for one call (positional, keyword, defaults); unknown otherwise."""
    params = [*function.args.posonlyargs, *function.args.args]
    defaults = dict(zip([p.arg for p in params[len(params) - len(function.args.defaults):]], function.args.defaults))
    env = {p.arg: UNKNOWN for p in [*params, *function.args.kwonlyargs]}
    for param, default in defaults.items():
        env[param] = evaluate(default)
    for param, default in zip(function.args.kwonlyargs, function.args.kw_defaults):
        if default is not None:
            env[param.arg] = evaluate(default)
    positional = [a for a in call.args if not isinstance(a, ast.Starred)]
    for param, arg in zip(params, positional):
        env[param.arg] = evaluate(arg)
    for keyword in call.keywords:
        if keyword.arg in env:
            env[keyword.arg] = evaluate(keyword.value)
    return env


def _straight_line(body: list[ast.stmt]):
    """Statements in order, descending into `try` and `with` bodies (not branches or loops)."""
    for stmt in body:
        if isinstance(stmt, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            yield from _straight_line(stmt.body)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            yield from _straight_line(stmt.body)
        else:
            yield stmt


def _assign(stmt: ast.stmt, local: dict, evaluate) -> None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        local[stmt.targets[0].id] = evaluate(stmt.value)
    elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        local[stmt.target.id] = evaluate(stmt.value)


def _parse(path: Path) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(Path(path).read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None


# -- finding the loads ---------------------------------------------------------------------

@dataclass(frozen=True)
class _LoadSite:
    call: ast.Call
    owner: str                  # torch.ops / torch.classes
    function: ast.FunctionDef | None   # the top-level function it sits in (None: module level)


def _load_sites(module: _Module, evaluator: Evaluator) -> list[_LoadSite]:
    sites = []
    top_level_of: dict[int, ast.FunctionDef] = {}
    for stmt in module.tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(stmt):
                top_level_of[id(inner)] = stmt
    for node in ast.walk(module.tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load_library"
                and node.args):
            continue
        owner = evaluator.qualified(node.func.value, module, {}) or ""
        if owner.rpartition(".")[2] not in LOAD_OWNERS or not owner.startswith(("torch.", "ops", "classes")):
            continue
        sites.append(_LoadSite(node, owner if owner.startswith("torch.") else f"torch.{owner}",
                               top_level_of.get(id(node))))
    return sites


def _runs_at_import(module: _Module, node: ast.AST) -> bool:
    """A call at module level (not inside any def or class method)."""
    for stmt in module.tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if stmt.lineno <= node.lineno <= (stmt.end_lineno or stmt.lineno):
                return False
    return True


def loads_in(evaluator: Evaluator, module: _Module, callers: list[str]) -> list[OpLibraryLoad]:
    """Every load_library call of `module`, evaluated; loads inside a function once per known call
    of it (in `module` or in the modules named in `callers`). A load inside a function nobody
    calls with known arguments (a wrapper such as torch's own `torch.classes.load_library`) is
    not a load of any particular library and is left out."""
    out: list[OpLibraryLoad] = []
    for site in _load_sites(module, evaluator):
        argument = site.call.args[0]
        expression = ast.unparse(argument)
        call = f"{site.owner}.load_library"

        def record(value, at_import: bool) -> None:
            out.append(_as_load(module, site.call.lineno, call, expression, value, at_import))

        if site.function is None:
            value, at_import = evaluator.evaluate(argument, module, {}), _runs_at_import(module, site.call)
            if at_import or not isinstance(value, _Unknown):   # a method's load of its argument: a wrapper
                record(value, at_import)
            continue
        function = _Function(module, site.function)
        params = bind_arguments(site.function, ast.Call(func=ast.Name("_"), args=[], keywords=[]), lambda e: UNKNOWN)
        local = evaluator.locals_before(function, params, site.call.lineno)
        value = evaluator.evaluate(argument, module, local)
        if not isinstance(value, _Unknown):
            record(value, False)
            continue
        # The path depends on the function's arguments: one load per call with known arguments.
        # Only modules whose text names the function can call it: the rest are never parsed.
        needle = site.function.name.encode()
        for caller in [module, *(evaluator.module(c) for c in callers if _mentions(evaluator.path_of(c), needle))]:
            if caller is None:
                continue
            for call_node in ast.walk(caller.tree):
                if not isinstance(call_node, ast.Call):
                    continue
                target = evaluator.evaluate(call_node.func, caller, {}) if isinstance(call_node.func, (ast.Name, ast.Attribute)) else None
                if not (isinstance(target, _Function) and target.node is site.function):
                    continue
                bound = bind_arguments(site.function, call_node, lambda e: evaluator.evaluate(e, caller, {}))
                if all(isinstance(v, _Unknown) for v in bound.values()) and bound:
                    continue
                local = evaluator.locals_before(function, bound, site.call.lineno)
                value = evaluator.evaluate(argument, module, local)
                if not isinstance(value, _Unknown):
                    at_import = _runs_at_import(caller, call_node)
                    out.append(_as_load(caller, call_node.lineno, call, ast.unparse(call_node), value, at_import))
    return [load for load in dict.fromkeys(out) if load is not None]


# Other platforms' shared-library names: a branch for Windows or macOS, never loaded here.
_FOREIGN_SUFFIXES = (".dll", ".dylib", ".pyd")


def _as_load(module: _Module, line: int, call: str, expression: str, value, at_import: bool) -> OpLibraryLoad | None:
    if isinstance(value, _Spec):
        # FileFinder found nothing: the load would fail; name the file it looked for.
        path = Path(value.origin or value.wanted)
        return OpLibraryLoad(module.name, module.path, line, call, expression, path, value.origin is not None, at_import)
    if isinstance(value, str) and value.lower().endswith(_FOREIGN_SUFFIXES):
        return None
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute():
            # torch.ops.load_library passes the path to ctypes.CDLL: relative to the working
            # directory, which the scan cannot know; take the module's folder as the guess.
            path = Path(module.path).parent / path
        return OpLibraryLoad(module.name, module.path, line, call, expression, path, path.is_file(), at_import)
    return OpLibraryLoad(module.name, module.path, line, call, expression, None, False, at_import)


def find_op_library_loads(graph) -> list[OpLibraryLoad]:
    """Loads in every Python module of an import graph (interpkit.analyzer.source.imports.ImportGraph)."""
    def source_of(name: str):
        node = graph.nodes.get(name)
        # ModuleKind is a str enum; comparing with its value keeps imports.py (which calls this
        # module) out of this module's imports: no cycle.
        if node is None or node.kind != "python" or node.path is None or node.path.suffix != ".py":
            return None
        return node.path, node.is_package

    evaluator = Evaluator(source_of)
    importers: dict[str, list[str]] = {}
    for importer, targets in graph.edges.items():
        for target in targets:
            importers.setdefault(target, []).append(importer)
    out: list[OpLibraryLoad] = []
    for name in sorted(graph.nodes):
        found = source_of(name)
        if found is None or not _mentions(found[0], b"load_library"):
            continue
        module = evaluator.module(name)
        if module is None:
            continue
        callers = [i for i in sorted(set(importers.get(name, ()))) if i != name]
        try:
            out.extend(loads_in(evaluator, module, callers))
        except Exception:  # noqa: BLE001 - odd code in one module must not cost the scan its graph
            log.debug("cannot evaluate the load_library calls of %s", name, exc_info=True)
    return out


def loads_in_source(path: Path, tree: ast.Module, module: str = "__main__") -> list[OpLibraryLoad]:
    """The loads of one file on its own (the IK410 rule pass: no import graph)."""
    evaluator = Evaluator(lambda name: None)
    parsed = evaluator.add(module, Path(path).resolve() if Path(path).exists() else Path(os.path.abspath(path)), tree)
    return loads_in(evaluator, parsed, [])


def _mentions(path: Path | None, needle: bytes) -> bool:
    if path is None:
        return False
    try:
        with open(path, "rb") as file:   # path is a Path already: no second one made
            return needle in file.read()
    except OSError:
        return False
