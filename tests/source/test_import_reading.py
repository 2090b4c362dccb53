"""The import graph's cheaper readings give the answers of the full ones: the TYPE_CHECKING test
without an unparse, the eager reading of an installed module (only what runs at import time),
the reader's chunked workers and its cache, and resolve() remembered inside one scan."""
from __future__ import annotations

import ast
import os
import warnings
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from interpkit.analyzer.plumbing import cache
from interpkit.analyzer.config import Config
from interpkit.analyzer.source import imports
from interpkit.analyzer.source.imports import ImportReader, build_import_graph, imports_from_tree, read_imports

from tests.source.test_import_walk import GUARDS, parsed_real_files

# -- TYPE_CHECKING without ast.unparse ----------------------------------------------------------

_IDENTIFIERS = st.sampled_from(["TYPE_CHECKING", "typing", "x", "TYPE_CHECKINGx", "sys", "t"])
_LEAVES = _IDENTIFIERS | st.sampled_from([
    "'TYPE_CHECKING'", "'a.TYPE_CHECKING'", "b'TYPE_CHECKING'", "1", "1.5", "1e309", "2j", "None", "...",
    "f'{TYPE_CHECKING}'", "f'{x!r:>{TYPE_CHECKING}}'", "f'{x=}'",
])
_SHAPES = [
    "{0}.TYPE_CHECKING", "{0}.version_info", "{0}.{2}", "{0}({1})", "{0}(TYPE_CHECKING={1})", "{0}(*{1}, **{0})",
    "{0}[{1}]", "{0}[{1}:{0}]", "({0} or {1})", "({0} and {1})", "(not {0})", "({0} >= {1})", "({0} is not {1})",
    "({0} if {1} else {0})", "(lambda TYPE_CHECKING: {0})", "(lambda q, *TYPE_CHECKING: {0})", "[{0}, *{1}]",
    "{{**{0}, {1}: 1}}", "(w := {0})", "-{0}", "({0} + {1})", "[{0} for TYPE_CHECKING in {1}]", "({0}, {1})",
    "{{{0}, {1}}}", "{0}.{2}.TYPE_CHECKING", "({0} < {1} < {0})",
]


def _expressions():
    def grow(inner):
        return st.tuples(st.sampled_from(_SHAPES), inner, inner, _IDENTIFIERS).map(
            lambda parts: parts[0].format(parts[1], parts[2], parts[3]))

    return st.recursive(_LEAVES, grow, max_leaves=8)


@settings(max_examples=600, deadline=None)
@given(_expressions())
def test_type_checking_without_unparse_gives_the_unparsed_answer(text):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test = ast.parse(text, mode="eval").body
    except SyntaxError:   # `1.TYPE_CHECKING` and the like
        assume(False)
    assert imports._is_type_checking_fast(test) == imports._is_type_checking(test), text
    if not imports._spells(test, ("TYPE_CHECKING",)):
        assert ast.unparse(test).split(".")[-1] != "TYPE_CHECKING", text


@pytest.mark.parametrize("text,expected", [
    ("TYPE_CHECKING", True), ("typing.TYPE_CHECKING", True), ("x or y.TYPE_CHECKING", True),
    ("not TYPE_CHECKING", False), ("f(TYPE_CHECKING=1)", False), ("'TYPE_CHECKING'", False),
    ("sys.version_info >= (3, 8)", False), ("x if y else TYPE_CHECKING", False), ("{**a, b: 1}", False),
])
def test_type_checking_tests_by_hand(text, expected):
    test = ast.parse(text, mode="eval").body
    assert imports._is_type_checking_fast(test) is imports._is_type_checking(test) is expected


def test_a_folded_type_checking_is_one_though_the_text_lacks_it():
    """The parser NFKC-folds identifiers: fullwidth letters read as TYPE_CHECKING."""
    source = "import typing\nif typing.\uff34YPE_CHECKING:\n    import only_typing\nif x:\n    import plain\n"
    assert "TYPE_CHECKING" not in source and not imports._may_call_import(source)
    tree = ast.parse(source)
    refs = imports_from_tree(tree, "m", False, source=source)
    assert refs == imports._visit_every_node(tree, "m", False)
    assert [(r.name, r.type_checking) for r in refs] == [("typing", False), ("only_typing", True), ("plain", False)]


def test_a_test_too_deep_to_unparse_is_read_without_it():
    """ast.unparse recurses once per operand: on a test deeper than the stack allows it raised,
    and the whole file's reading with it (the graph's scan stopped); no unparse, no error."""
    source = "# TYPE_CHECKING\nif " + " + ".join(["a"] * 1500) + ":\n    import os\n"   # spelled: the test is walked
    tree = ast.parse(source)
    with pytest.raises(RecursionError):
        ast.unparse(tree.body[0].test)
    assert [(r.name, r.type_checking) for r in imports_from_tree(tree, "m", False, source=source)] == [("os", False)]


# -- eager reading: what an installed module runs at import time ---------------------------------

def _eager_of(refs, module):
    """What the graph follows in an installed module (imports.runs_at_import): not lazy, not for
    type checking, and unguarded or of the module's own package."""
    top = module.partition(".")[0]
    return [r for r in refs if not (r.lazy or r.type_checking) and (not r.conditional or r.name.partition(".")[0] == top)]


@pytest.mark.parametrize("source", [GUARDS, GUARDS + "importlib.import_module('by_call')\n"
                                    "def f():\n    __import__('lazy_call')\n"])
@pytest.mark.parametrize("module,is_package", [("pkg.mod", False), ("pkg", True)])
def test_eager_reading_is_the_full_reading_filtered(source, module, is_package):
    tree = ast.parse(source)
    full = imports_from_tree(tree, module, is_package, source=source)
    eager = imports_from_tree(tree, module, is_package, source=source, eager=True)
    assert eager == _eager_of(full, module)
    assert {"numpy", "only_typing", "in_method", "in_try_star"}.isdisjoint(r.name for r in eager)
    assert {"os", "in_class_body", "fallback_in_handler", "in_for", "in_case"} <= {r.name for r in eager}


@pytest.mark.slow
def test_eager_reading_and_type_checking_over_real_trees():
    tests = 0
    for path, tree, source in parsed_real_files():
        for module, is_package in (("a.b", True), ("a.b.c", False)):
            full = imports_from_tree(tree, module, is_package, source=source)
            assert imports_from_tree(tree, module, is_package, source=source, eager=True) == _eager_of(full, module), path
        for node in ast.walk(tree):
            if isinstance(node, ast.If):
                tests += 1
                assert imports._is_type_checking_fast(node.test) == imports._is_type_checking(node.test), \
                    (path, node.lineno)
    assert tests > 1000


def _installed_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A model importing an installed package (on a --python-path folder: not local) whose
    modules also import lazily, under guards and for type checking only."""
    model = tmp_path / "proj" / "model"
    model.mkdir(parents=True)
    (model / "__init__.py").write_text("import inst\n")
    site = tmp_path / "site"
    inst = site / "inst"
    inst.mkdir(parents=True)
    (inst / "__init__.py").write_text("".join(f"from . import m{i}\n" for i in range(40)) + "import json\n")
    for i in range(40):
        (inst / f"m{i}.py").write_text(
            f"from . import m{(i + 1) % 40}\nimport typing\n"
            f"try:\n    import inst.guarded{i}\nexcept ImportError:\n    pass\n"
            f"if typing.TYPE_CHECKING:\n    import inst.typing{i}\n"
            f"def later():\n    import inst.lazy{i}\n"
            "class Holder:\n    import inst.in_class\n"
            + ("import importlib\nimportlib.import_module('inst.by_call')\n" if i % 2 else ""))
        for kind in ("guarded", "typing", "lazy"):
            (inst / f"{kind}{i}.py").write_text("import email\n")
    (inst / "in_class.py").write_text("import csv\n")
    (inst / "by_call.py").write_text("import html\n")
    return model, site


def test_installed_modules_read_eagerly_give_the_graph_of_full_reading(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))
    model, site = _installed_tree(tmp_path)
    config = Config(follow_imports=True, python_paths=[site])
    asked = []

    def full_reading(path, module, is_package, eager=False):
        asked.append(eager)
        return read_imports(path, module, is_package)

    reference = build_import_graph([model], config, imports_of=full_reading).to_json()
    assert True in asked and False in asked        # the entry in full, the installed modules eagerly
    assert build_import_graph([model], config).to_json() == reference
    names = {m["name"] for m in reference["modules"]}
    # a guarded import of the package's own module runs at import time too (issue 24, detectron2._C)
    assert {"inst.m39", "inst.in_class", "inst.by_call", "html", "csv", "inst.guarded0", "inst.guarded39"} <= names
    assert not any(n.startswith(("inst.typing", "inst.lazy")) for n in names)
    for jobs in (2, 2, 1):   # cold, then warm from the cache; then in this process alone
        with ImportReader(jobs=jobs) as reader:
            assert build_import_graph([model], config, imports_of=reader).to_json() == reference


def test_eager_and_full_readings_are_cached_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "mod.py"
    path.write_text("import os\ndef f():\n    import json\n")
    reader = ImportReader(jobs=1)
    assert [r.name for r in reader(path, "mod", False, eager=True)] == ["os"]
    reader.close()
    reader = ImportReader(jobs=1)
    reader.ahead(path, "mod", False)
    assert [r.name for r in reader(path, "mod", False)] == ["os", "json"]
    assert [r.name for r in reader(path, "mod", False, eager=True)] == ["os"]
    reader.close()


def test_chunks_of_worker_reads_come_back_in_the_order_asked(tmp_path, monkeypatch):
    """More files than one chunk, some announced twice, some never: each answer is its own file's."""
    monkeypatch.setenv("INTERPKIT_NO_CACHE", "1")
    files = []
    for i in range(3 * imports.READ_CHUNK + 5):
        path = tmp_path / f"f{i}.py"
        path.write_text(f"import mod{i}\n")
        files.append(path)
    with ImportReader(jobs=2) as reader:
        for path in files[:-3] + files[:4]:
            reader.ahead(path, path.stem, False)
        assert len(reader.announced) + len(reader.missed) == len(files) - 3
        for i, path in enumerate(files):
            assert [r.name for r in reader(path, path.stem, False)] == [f"mod{i}"]
        assert reader.pool is not None and not reader.pending and not reader.unsent


# -- real paths remembered in one scan ----------------------------------------------------------

def test_resolve_is_remembered_inside_one_scan_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.py").write_text("")
    os.symlink(tmp_path / "a", tmp_path / "link")
    with cache.one_scan():
        first = cache.resolve("link/f.py")
        assert first == Path(tmp_path / "a" / "f.py").resolve()
        assert cache.resolve("link/f.py") is first and cache.resolve(Path("link/f.py")) == first
        with cache.one_scan():                      # an inner scan shares the outer one's answers
            assert cache.resolve("link/f.py") is first
    assert cache._RESOLVED is None and cache._FOLDERS is None
    os.unlink(tmp_path / "link")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f.py").write_text("")
    os.symlink(tmp_path / "b", tmp_path / "link")
    assert cache.resolve("link/f.py") == Path(tmp_path / "b" / "f.py").resolve()
