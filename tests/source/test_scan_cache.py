"""The persistent scan cache: a warm scan gives the same report, a changed file or configuration
is scanned again, and ELF facts come back from disk equal to freshly built ones."""
from __future__ import annotations

import json
import os
import shutil

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.facts import FactsCache, build_facts
from interpkit.analyzer.report.json import report_to_dict
from interpkit.analyzer.scan import scan_paths


def _json(report) -> str:
    data = report_to_dict(report)
    data.get("packaging_plan", {}).get("export_check", {}).pop("seconds", None)
    return json.dumps(data, sort_keys=True, default=str)


def _tree(tmp_path):
    tree = tmp_path / "model"
    tree.mkdir()
    (tree / "a.py").write_text("import os\nos.fork()\n")
    (tree / "b.py").write_text("import signal\nsignal.signal(1, print)\n")
    return tree


def test_warm_report_equals_cold_and_a_change_is_seen(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))
    tree = _tree(tmp_path)
    config = Config(follow_imports=False)
    cold = scan_paths([tree], config, cache=True)
    warm = scan_paths([tree], config, cache=True)
    assert warm is not cold and _json(warm) == _json(cold)
    assert sorted(f.code for f in warm.findings) == ["IK401", "IK403"]

    (tree / "a.py").write_text("import os\n\nos.getpid()\n")       # new size and mtime
    changed = scan_paths([tree], config, cache=True)
    assert sorted(f.code for f in changed.findings) == ["IK401"]
    narrowed = scan_paths([tree], config.with_cli(ignore=["IK401"]), cache=True)   # another config
    assert narrowed.findings == []


def test_no_cache_env_turns_every_store_off(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("INTERPKIT_NO_CACHE", "1")
    scan_paths([_tree(tmp_path)], Config(follow_imports=False), cache=True)
    assert not (tmp_path / "cache").exists()


def test_elf_facts_from_disk_equal_fresh_ones(built_fixtures, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "ext.so"
    shutil.copy(built_fixtures("single_phase_static"), path)
    first = FactsCache().get(path)              # built, and written to disk
    second = FactsCache().get(path)             # a new process-level cache: read from disk
    assert second is not first and second == first == build_facts(path)
    assert os.path.isfile(tmp_path / "cache" / "elf-facts-v1.sqlite")


def test_real_paths_inside_one_scan_equal_the_full_walk(tmp_path, monkeypatch):
    """cache.realpath/resolve remember folders inside one_scan(): the same answers as
    os.path.realpath / Path.resolve for links to folders, links to files, `..` links, loops,
    missing and relative paths, asked in any order, again and again."""
    from pathlib import Path

    from interpkit.analyzer.plumbing import cache

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "f.py").write_text("x = 1\n")
    os.symlink(tmp_path / "a" / "b", tmp_path / "link")
    os.symlink("c/f.py", tmp_path / "a" / "b" / "g.py")
    os.symlink("../..", tmp_path / "a" / "b" / "c" / "up")
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    paths = ["a/b/c/f.py", "link/c/f.py", "a/b/g.py", "link/g.py", "loop1/x.py", "loop1", "a/missing/x.py",
             "a/b/c/up/b/c/f.py", "link/c/up/link/c/f.py", "f.py", "a/b/c/../c/f.py", "a//b/./c/f.py"]
    paths += [str(tmp_path / p) for p in paths]

    def outcome(resolver, path):
        try:
            return str(resolver(path))
        except RuntimeError:
            return "loop"

    expected = {p: (os.path.realpath(p), outcome(lambda q: Path(q).resolve(), p)) for p in paths}
    assert "loop" in {resolved for _, resolved in expected.values()}
    with cache.one_scan():
        for path in paths + paths[::-1]:
            assert (cache.realpath(path), outcome(cache.resolve, path)) == expected[path], path
        os.unlink(tmp_path / "link")    # outside one scan's assumptions: only folders are kept
        os.symlink(tmp_path / "a", tmp_path / "link")
    assert cache._FOLDERS is None
    assert cache.realpath("link/b/c/f.py") == os.path.realpath("link/b/c/f.py")
