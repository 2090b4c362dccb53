"""ElfFacts are immutable and cached per (path, size, mtime, options); one scan's closure never
shows up in another scan of the same file in the same process (issue 12, item 3)."""
from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf import facts as facts_module
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.analyzer.elf.facts import ClosureFacts, FactsCache, FactsOptions, facts_for
from interpkit.core.findings import FileKind


def _only(results, path):
    [result] = [r for r in results if r.path == path]
    return result


def test_scan_without_closure_after_a_closure_scan_reports_no_closure(built_fixtures, tmp_path):
    """The leak: analyze.py wrote facts.closure onto the cached facts, so a later
    closure=False scan in the same process still reported the closure."""
    path = tmp_path / built_fixtures("libpython_linked").name
    shutil.copy(built_fixtures("libpython_linked"), path)  # a path no other test has cached
    with_closure = _only(analyze_elf_files([path], Config(), closure=True), path)
    assert with_closure.facts["closure"]["libpython3.11.so.1.0"]  # resolved to a path

    without = _only(analyze_elf_files([path], Config(), closure=False), path)
    assert "closure" not in without.facts
    assert facts_for(path).closure == {}
    # and the other way round: a closure scan after a plain one still resolves it
    again = _only(analyze_elf_files([path], Config(), closure=True), path)
    assert again.facts["closure"] == with_closure.facts["closure"]


def test_facts_are_frozen(built_fixtures):
    facts = facts_for(built_fixtures("single_phase_static"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.closure = {"libx.so": None}
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.init.inits = ()
    assert isinstance(facts.init.inits, tuple)


def test_with_closure_is_a_copy(built_fixtures):
    facts = facts_for(built_fixtures("single_phase_static"))
    joined = facts.with_closure(ClosureFacts((("libfoo.so", None),)))
    assert dict(joined.closure) == {"libfoo.so": None}
    assert facts.closure == {} and facts_for(built_fixtures("single_phase_static")) is facts
    with pytest.raises(TypeError):
        joined.closure["libbar.so"] = None  # a read-only mapping, not a dict to fill in


def test_cache_is_bounded_least_recently_used(built_fixtures, tmp_path):
    names = ["clean", "single_phase_static", "gilstate"]
    paths = []
    for name in names:
        paths.append(tmp_path / built_fixtures(name).name)
        shutil.copy(built_fixtures(name), paths[-1])
    cache = FactsCache(max_entries=2)
    first = cache.get(paths[0])
    cache.get(paths[1])
    assert cache.get(paths[0]) is first            # a hit makes it the most recent
    cache.get(paths[2])                            # evicts paths[1], the least recent
    assert len(cache) == 2
    misses = cache.misses
    assert cache.get(paths[0]) is first and cache.misses == misses
    cache.get(paths[1])
    assert cache.misses == misses + 1


def test_cache_key_has_size_mtime_and_options(built_fixtures, tmp_path):
    path = tmp_path / "copy.so"
    shutil.copy(built_fixtures("clean"), path)
    cache = FactsCache()
    first = cache.get(path)
    assert cache.get(path) is first
    assert cache.get(path, FactsOptions(rodata_scan_limit=0)) is not first   # options are part of the key
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache.get(path) is not first                                     # so is the mtime
    # a rebuilt file of another size at the same path is read again
    shutil.copy(built_fixtures("single_phase_static"), path)
    rebuilt = cache.get(path)
    assert rebuilt.size == os.path.getsize(path) and rebuilt.init.inits[0].module == "single_phase_static"


def test_process_cache_stays_bounded(built_fixtures, tmp_path):
    source = built_fixtures("clean")
    bound = facts_module.CACHE.max_entries
    for index in range(bound + 5):
        copy = tmp_path / f"c{index}.so"
        shutil.copy(source, copy)
        assert analyze_elf_files([copy], Config(), closure=False)[0].kind is FileKind.EXTENSION
    assert len(facts_module.CACHE) <= bound


_DELEGATE = """
#include <Python.h>
PyObject *delegate_init(void) {
    static PyModuleDef def = {PyModuleDef_HEAD_INIT, "deleg", NULL, -1, NULL};
    return PyModule_Create(&def);
}
"""
# Imports both PyModule_Create2 and PyModuleDef_Init (so the file alone cannot tell the kind) and
# its PyInit_ only jumps to delegate_init in libdelegate.so, which imports PyModule_Create2 only.
_EXTENSION = """
#include <Python.h>
extern PyObject *delegate_init(void);
static PyModuleDef other = {PyModuleDef_HEAD_INIT, "other", NULL, 0, NULL};
PyObject *make_single(void) { return PyModule_Create(&other); }
PyObject *make_multi(void) { return PyModuleDef_Init(&other); }
PyMODINIT_FUNC PyInit_deleg(void) { return delegate_init(); }
"""


def _build_delegating_extension(folder):
    import subprocess
    import sysconfig

    include = sysconfig.get_paths()["include"]
    (folder / "delegate.c").write_text(_DELEGATE)
    (folder / "ext.c").write_text(_EXTENSION)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", f"-I{include}", str(folder / "delegate.c"),
                    "-o", str(folder / "libdelegate.so")], check=True)
    extension = folder / "deleg.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", f"-I{include}", str(folder / "ext.c"), f"-L{folder}",
                    "-ldelegate", "-Wl,-rpath,$ORIGIN", "-o", str(extension)], check=True)
    return extension


def test_delegated_init_kind_stays_with_the_scan_that_inferred_it(tmp_path):
    """The init kind inferred from a dependency found through the closure belongs to that scan:
    the leak rewrote facts.init.inits on the cached facts, so a later closure=False scan showed it."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    extension = _build_delegating_extension(tmp_path)
    [own] = facts_for(extension).init.inits
    assert own.kind.value == "unknown" and own.calls == ("delegate_init",)
    joined = _only(analyze_elf_files([extension], Config(), closure=True), extension)
    assert joined.facts["init"][0]["kind"] == "single-phase"
    assert "libdelegate.so" in joined.facts["init"][0]["how"]
    alone = _only(analyze_elf_files([extension], Config(), closure=False), extension)
    assert alone.facts["init"][0]["kind"] == "unknown"
    assert facts_for(extension).init.inits == (own,)
