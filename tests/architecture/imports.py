"""The import graph of the interpkit source tree, read with ast (no module is imported).

Every `import` and `from ... import` counts, including function-local and TYPE_CHECKING ones:
a function-local import still makes the importing module depend on the imported one, it only
hides a cycle from the interpreter until the function runs.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Import name -> folder, as package-dir in pyproject.toml maps them.
FOLDERS: dict[str, str] = {
    "interpkit": "interpkit",
    "interpkit.analyzer": "analyzer",
    "interpkit.native": "native",
    "interpkit.serve": "serve",
    "interpkit.shims": "shims",
}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int


def module_files(root: Path = ROOT, folders: Mapping[str, str] = FOLDERS) -> dict[str, Path]:
    """Module name -> source file, for every .py file of the mapped folders."""
    modules: dict[str, Path] = {}
    for package, folder in folders.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _absolute(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _targets(node: ast.AST, importer: str, is_package: bool, known: Iterable[str]) -> list[str]:
    known = set(known)
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = _absolute(importer, is_package, node.module, node.level)
        # `from pkg import mod` depends on pkg.mod when that is a module, else on pkg itself.
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return []


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that `name` is or lies inside (`a.b.c` -> `a.b` when c is a name)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def import_edges(modules: Mapping[str, Path]) -> list[Edge]:
    known = set(modules)
    edges = []
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            for target in _targets(node, importer, is_package, known):
                imported = _resolve(target, known)
                if imported is not None and imported != importer:
                    edges.append(Edge(importer, imported, node.lineno))
    return edges


def owner(module: str, groups: Iterable[str]) -> str | None:
    """The most specific group (a package prefix) a module belongs to."""
    best = None
    for group in groups:
        if (module == group or module.startswith(group + ".")) and (best is None or len(group) > len(best)):
            best = group
    return best


def cycles(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a long chain of modules cannot hit the recursion limit.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


# The layers, bottom first. A module may import its own layer and the layers below it, never
# one above: core knows nothing of interpkit; the runtimes (native) only core; the analyzer
# (scan, verify, memory, trace) core and native; serving (`interpkit run`) the analyzer's
# smaps reader; the shims (patch) may use the analyzer; the
# command line sits on top. The root package `interpkit` (its __init__: the `interpkit.scan`
# facade) and `python -m interpkit` belong to the top.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("interpkit.core",)),
    ("native", ("interpkit.native",)),
    ("analyzer", ("interpkit.analyzer",)),
    ("serve", ("interpkit.serve",)),
    ("shims", ("interpkit.shims",)),
    ("cli", ("interpkit.cli", "interpkit.commands", "interpkit.__main__", "interpkit")),
)


def layer_of(module: str) -> tuple[int, str]:
    """(rank, layer name) of a module: the layer whose most specific package holds it."""
    best: tuple[int, int, str] | None = None
    for rank, (name, packages) in enumerate(LAYERS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and (best is None or len(package) > best[0]):
                best = (len(package), rank, name)
    if best is None:
        raise ValueError(f"{module} is in no layer")
    return best[1], best[2]


def layer_violations(edges: Iterable[Edge]) -> list[str]:
    out = []
    for edge in edges:
        (low, low_name), (high, high_name) = layer_of(edge.importer), layer_of(edge.imported)
        if high > low:
            out.append(f"{edge.importer}:{edge.line} imports {edge.imported} "
                       f"({low_name} must not depend on {high_name})")
    return sorted(set(out))


def package_of(module: str, modules: Mapping[str, Path]) -> str:
    """The unit the package-cycle check compares: a layer's first-level subpackage
    (interpkit.analyzer.rules for interpkit.analyzer.rules.elf.static_tls), or the module itself
    when it sits directly in a layer's package (interpkit.analyzer.registry)."""
    roots = sorted((p for _, packages in LAYERS for p in packages), key=len, reverse=True)
    root = next(r for r in roots if module == r or module.startswith(r + "."))
    rest = module[len(root) + 1:].split(".") if module != root else []
    if len(rest) <= 1:
        return module
    first = f"{root}.{rest[0]}"
    return first if first in modules and modules[first].name == "__init__.py" else module


def module_cycles(modules: Mapping[str, Path], edges: Iterable[Edge]) -> list[list[str]]:
    return cycles(modules, [(e.importer, e.imported) for e in edges])


def package_cycles(modules: Mapping[str, Path], edges: Iterable[Edge]) -> list[list[str]]:
    groups = {m: package_of(m, modules) for m in modules}
    return cycles(set(groups.values()), [(groups[e.importer], groups[e.imported]) for e in edges])
