"""One dependency direction (core <- native <- analyzer <- serve <- shims <- cli) and no import cycles.

The graph is read from the source with ast, function-local imports included (see imports.py).
The last tests plant a violation and a cycle in a copy of the tree and check they are caught,
so a checker that silently stopped seeing imports would fail here too.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.architecture.imports import (FOLDERS, ROOT, import_edges, layer_violations, module_cycles, module_files,
                                        package_cycles)


def _graph(root: Path = ROOT):
    modules = module_files(root)
    return modules, import_edges(modules)


@pytest.fixture(scope="module")
def graph():
    """The checkout's modules and import edges, read once for the checks below."""
    return _graph()


def test_every_package_folder_is_read(graph):
    modules, edges = graph
    for package in FOLDERS:
        assert package in modules, f"{package} has no __init__.py under {FOLDERS[package]}/"
    # The known spine of a scan: if these edges vanished the parser stopped seeing imports.
    pairs = {(e.importer, e.imported) for e in edges}
    assert ("interpkit.analyzer.scan", "interpkit.analyzer.elf.analyze") in pairs  # function-local import
    assert ("interpkit.analyzer.registry", "interpkit.core.findings") in pairs


def test_no_layer_violations(graph):
    _, edges = graph
    assert layer_violations(edges) == []


def test_no_module_cycles(graph):
    modules, edges = graph
    assert module_cycles(modules, edges) == []


def test_no_package_cycles(graph):
    modules, edges = graph
    assert package_cycles(modules, edges) == []


def _copy_tree(tmp_path: Path) -> Path:
    for folder in FOLDERS.values():
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return tmp_path


def _plant(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n\n" + text + "\n")


def test_planted_layer_violation_is_caught(tmp_path):
    """A function-local `analyzer -> shims` import (the cycle this project once had)."""
    root = _copy_tree(tmp_path)
    _plant(root / "analyzer" / "registry.py", "def _planted():\n    from interpkit.shims import plan\n    return plan")
    _plant(root / "native" / "limits.py", "from ..analyzer import config  # relative, still a violation")
    modules, edges = _graph(root)
    found = layer_violations(edges)
    assert any(v.startswith("interpkit.analyzer.registry:") and "interpkit.shims.plan" in v for v in found), found
    assert any(v.startswith("interpkit.native.limits:") and "interpkit.analyzer.config" in v for v in found), found


def test_planted_cycles_are_caught(tmp_path):
    root = _copy_tree(tmp_path)
    # shims/wheel.py -> shims/apply.py closes apply -> wheel (the cycle patch once had).
    _plant(root / "shims" / "wheel.py", "def _planted():\n    import interpkit.shims.apply")
    # analyzer/elf -> analyzer/source closes a package cycle without any module cycle.
    (root / "analyzer" / "source" / "planted.py").write_text("from interpkit.analyzer.elf import image\n")
    (root / "analyzer" / "elf" / "planted.py").write_text("from interpkit.analyzer.source import planted\n")
    _plant(root / "analyzer" / "source" / "walk.py", "from interpkit.analyzer.elf import planted as _p")
    modules, edges = _graph(root)
    assert ["interpkit.shims.apply", "interpkit.shims.wheel"] in [
        [m for m in c if m in ("interpkit.shims.apply", "interpkit.shims.wheel")] for c in module_cycles(modules, edges)]
    assert any({"interpkit.analyzer.elf", "interpkit.analyzer.source"} <= set(c) for c in package_cycles(modules, edges))
    assert layer_violations(edges) == []
