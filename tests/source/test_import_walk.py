"""The import graph's reading of a file: the statement-only walk gives exactly the refs of the
every-node visitor (order, line numbers, guard / TYPE_CHECKING / lazy flags), and the reader
that parses ahead of the walk gives the same graph as reading each file in turn."""
from __future__ import annotations

import ast
import importlib.util
import warnings
from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.source import imports
from interpkit.analyzer.source.imports import ImportReader, ImportRef, build_import_graph, imports_from_tree, read_imports

GUARDS = '''\
import os, os.path as osp
from . import sibling
from .. import beyond
from ...deep import nothing
from .sub import a, b as c
from .star import *
try:
    import numpy
    from scipy import linalg
except ImportError:
    numpy = None
    import fallback_in_handler
else:
    import in_else
finally:
    import in_finally
try:
    import guarded_by_tuple
except (ValueError, builtins.ModuleNotFoundError):
    pass
try:
    import not_guarded
except KeyError:
    import in_keyerror_handler
try:
    import bare_guard
except:
    pass
import typing
if typing.TYPE_CHECKING:
    import only_typing
    if sys.version_info > (3, 12):
        import nested_typing
elif os.name == "nt":
    import in_elif
else:
    import in_else_branch
if TYPE_CHECKING:
    from torch import nn
if not TYPE_CHECKING:
    import runtime_only
if x or y.TYPE_CHECKING:
    import odd_test
class Model:
    import in_class_body
    def forward(self):
        import in_method
        class Inner:
            import in_inner_class
        async def helper():
            import in_async
        return Inner
for item in range(3):
    import in_for
else:
    import in_for_else
while False:
    import in_while
with open(__file__) as fh:
    import in_with
async def coroutine():
    async with ctx() as c:
        import in_async_with
    async for x in aiter():
        import in_async_for
match command:
    case "go":
        import in_case
    case _:
        try:
            import in_case_try
        except Exception:
            pass
try:
    import in_try_star
except* ImportError:
    import in_star_handler
lambda: None
'''


def _every_node(tree: ast.AST, module: str, is_package: bool) -> list[ImportRef]:
    return imports._visit_every_node(tree, module, is_package)


@pytest.mark.parametrize("module,is_package", [("pkg.mod", False), ("pkg", True), ("top", False)])
def test_statement_walk_equals_the_visitor_on_every_construct(module, is_package):
    tree = ast.parse(GUARDS)
    assert not imports._may_call_import(GUARDS)
    refs = imports_from_tree(tree, module, is_package, source=GUARDS)
    assert refs == _every_node(tree, module, is_package)
    by_name = {r.name: r for r in refs}
    assert not by_name["numpy"].lazy and by_name["numpy"].conditional and not by_name["numpy"].type_checking
    assert not by_name["fallback_in_handler"].conditional
    assert by_name["only_typing"].type_checking and by_name["nested_typing"].type_checking
    assert not by_name["in_elif"].conditional and not by_name["runtime_only"].conditional
    assert by_name["odd_test"].type_checking          # `ast.unparse(test)` ends in .TYPE_CHECKING
    assert by_name["guarded_by_tuple"].conditional and by_name["bare_guard"].conditional
    assert not by_name["not_guarded"].conditional
    assert by_name["in_method"].lazy and by_name["in_inner_class"].lazy and by_name["in_async"].lazy
    assert not by_name["in_class_body"].lazy
    assert by_name["in_try_star"].conditional and by_name["in_case_try"].conditional
    assert by_name["in_for"].line == GUARDS.splitlines().index("    import in_for") + 1


def test_calls_and_unknown_source_go_through_every_node():
    source = "import os\ndef f():\n    return importlib.import_module('yaml'), __import__('json')\n"
    tree = ast.parse(source)
    assert imports._may_call_import(source)
    refs = imports_from_tree(tree, "m", False, source=source)
    assert [r.name for r in refs] == ["os", "yaml", "json"]
    assert refs == imports_from_tree(tree, "m", False) == _every_node(tree, "m", False)
    # an identifier the parser folds (NFKC) to import_module is a call too
    folded = "import os\nimportlib.\uff49mport_module('yaml')\n"
    assert imports._may_call_import(folded)
    assert [r.name for r in imports_from_tree(ast.parse(folded), "m", False, source=folded)] == ["os", "yaml"]


def test_read_imports_honours_the_coding_cookie(tmp_path):
    path = tmp_path / "latin.py"
    path.write_bytes("# -*- coding: latin-1 -*-\n# caf\xe9\nimport os\ntry:\n    import numpy\nexcept ImportError:\n    pass\n"
                     .encode("latin-1"))
    refs = read_imports(path, "latin", False)
    assert [(r.name, r.conditional) for r in refs] == [("os", False), ("numpy", True)]
    assert imports._decoded(path.read_bytes()).startswith("# -*- coding")


def _real_trees() -> list[Path]:
    roots = []
    for name in ("libcst", "rich", "_pytest"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            roots.append(Path(spec.origin).parent)
    stdlib = Path(ast.__file__).parent
    return roots + [stdlib / name for name in ("asyncio", "concurrent", "email", "importlib", "multiprocessing")]


def parsed_real_files():
    """(path, tree, decoded source) of every parsable .py file of _real_trees(); asserts there are many."""
    files = sorted({f for root in _real_trees() for f in root.rglob("*.py")})
    assert len(files) > 500, "expected libcst's, rich's and pytest's installed sources"
    for path in files:
        data = path.read_bytes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(data)
        except (SyntaxError, ValueError):
            continue
        yield path, tree, imports._decoded(data)


@pytest.mark.slow
def test_statement_walk_equals_the_visitor_over_real_trees():
    statement_only = files = 0
    for path, tree, source in parsed_real_files():
        files += 1
        module, is_package = ("a.b", True) if path.name == "__init__.py" else ("a.b.c", False)
        assert imports_from_tree(tree, module, is_package, source=source) == _every_node(tree, module, is_package), path
        statement_only += source is not None and not imports._may_call_import(source)
    assert statement_only > files * 0.8


def _small_tree(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    pkg = root / "app"
    pkg.mkdir(parents=True)
    # wide: the walk queues all forty modules at once, so the reader sends them to workers
    (pkg / "__init__.py").write_text("from . import a\nimport json\n" + "".join(f"from . import m{i}\n" for i in range(40)))
    for i in range(40):
        nxt = f"from . import m{i + 1}\n" if i < 39 else "import email.message\n"
        (pkg / f"m{i}.py").write_text(f"{nxt}try:\n    import missing_{i}\nexcept ImportError:\n    pass\n")
    (pkg / "a.py").write_text("from . import m0\nimport typing\nif typing.TYPE_CHECKING:\n    import numpy\n")
    return pkg


def test_reader_ahead_gives_the_graph_of_reading_in_turn(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))
    pkg = _small_tree(tmp_path)
    config = Config(follow_imports=False)
    plain = build_import_graph([pkg], config).to_json()
    for jobs, cache in ((2, True), (1, False)):
        with ImportReader(jobs=jobs, cache=cache) as reader:   # the first fills the cache
            ahead = build_import_graph([pkg], config, imports_of=reader).to_json()
            assert (reader.pool is not None) == (jobs > 1)
        assert ahead == plain
    assert (tmp_path / "cache" / f"{imports.IMPORTS_CACHE}.sqlite").is_file()
    # warm: every file from the cache, nothing parsed
    monkeypatch.setattr(imports, "read_imports", lambda *a: pytest.fail("read a cached file"))
    with ImportReader(jobs=2) as reader:
        assert build_import_graph([pkg], config, imports_of=reader).to_json() == plain


def test_reader_rereads_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "mod.py"
    path.write_text("import os\n")
    reader = ImportReader(jobs=1)
    assert [r.name for r in reader(path, "mod", False)] == ["os"]
    reader.close()
    path.write_text("import os, sys\n")
    reader = ImportReader(jobs=1)
    reader.ahead(path, "mod", False)
    assert [r.name for r in reader(path, "mod", False)] == ["os", "sys"]
    reader.close()


def test_reader_without_cache_or_with_a_broken_pool(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_NO_CACHE", "1")
    pkg = _small_tree(tmp_path)
    config = Config(follow_imports=False)
    plain = build_import_graph([pkg], config).to_json()
    reader = ImportReader(jobs=2)
    monkeypatch.setattr(reader, "_start_pool", lambda: setattr(reader, "pool", _BrokenPool()))
    try:
        assert build_import_graph([pkg], config, imports_of=reader).to_json() == plain
    finally:
        reader.close()


class _BrokenPool:
    def submit(self, *args, **kwargs):
        raise RuntimeError("pool is broken")

    def shutdown(self, **kwargs):
        pass


def test_an_installed_packages_guarded_import_of_its_own_extension_is_followed(tmp_path):
    """Issue 24 (seen on detectron2): `try: from detectron2 import _C / except ImportError:` is
    how it loads its compiled part; the walk skipped every guarded import of an installed
    package, so the scan never reached detectron2/_C*.so. A guarded import of the package's own
    module is followed; a guarded optional dependency (another distribution) still is not."""
    import sysconfig

    from interpkit.analyzer.config import Config
    from interpkit.analyzer.source.imports import ModuleKind, build_import_graph

    site = tmp_path / "site-packages"
    package = site / "ownext"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from ownext import layers\n")
    (package / "layers.py").write_text(
        "try:\n    from ownext import _C\nexcept ImportError:\n    _C = None\n"
        "try:\n    import optional_viewer\nexcept ImportError:\n    optional_viewer = None\n")
    (package / f"_C{sysconfig.get_config_var('EXT_SUFFIX')}").write_bytes(b"")   # classified by its name
    (site / "optional_viewer.py").write_text("import json\n")
    model = tmp_path / "model" / "net.py"
    model.parent.mkdir()
    model.write_text("import ownext\n")
    for reader in (None, ImportReader(cache=False, jobs=1)):
        graph = build_import_graph([model], Config(python_paths=(str(site),)), imports_of=reader)
        assert graph.nodes["ownext._C"].kind is ModuleKind.EXTENSION and graph.nodes["ownext._C"].conditional
        assert "optional_viewer" not in graph.nodes
        if reader is not None:
            reader.close()
