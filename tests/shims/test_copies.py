"""Per-interpreter copies, observed in legacy subinterpreters of one real process."""
from __future__ import annotations

import json

import pytest

from tests.shims.shim_helpers import run_in_legacy_subinterpreters
from interpkit.shims.private_copy import copy_path, make_private_copy, probe_legacy
from interpkit.shims.relink import read_state

_IMPORT_BY_FILE = """
import importlib.util
spec = importlib.util.spec_from_file_location({module!r}, {path!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
RESULT = [mod.bump(), mod.bump()]
"""

_IMPORT_WITH_HOOK = """
import importlib, interpkit.shims.private_copy
finder = interpkit.shims.private_copy.install({{{module!r}: {path!r}}}, {directory!r})
mod = importlib.import_module({module!r})
RESULT = [mod.bump(), mod.bump(), finder.loaded[{module!r}]]
"""


def test_single_phase_counter_is_shared_without_copies_and_private_with_them(built_fixtures, tmp_path):
    source = str(built_fixtures("single_phase_static"))
    shared = run_in_legacy_subinterpreters([_IMPORT_BY_FILE.format(module="single_phase_static", path=source)] * 3)
    assert shared == [[1, 2], [3, 4], [5, 6]]
    body = _IMPORT_WITH_HOOK.format(module="single_phase_static", path=source, directory=str(tmp_path / "copies"))
    private = run_in_legacy_subinterpreters([body] * 3)
    assert [r[:2] for r in private] == [[1, 2]] * 3
    copies = [r[2] for r in private]
    assert len(set(copies)) == 3 and all(c.startswith(str(tmp_path / "copies")) for c in copies)


def test_copies_are_relinked_so_gnu_unique_statics_are_not_shared(built_fixtures, tmp_path):
    """Two private copies of a C++ extension still share an inline static through STB_GNU_UNIQUE
    unless the copy is relinked, which make_private_copy does."""
    source = built_fixtures("gnu_unique_cpp")
    assert read_state(source).gnu_unique
    raw = [make_private_copy(source, "gnu_unique_cpp", f"raw{i}", tmp_path, relink=False) for i in (1, 2)]
    fixed = [make_private_copy(source, "gnu_unique_cpp", f"fixed{i}", tmp_path) for i in (1, 2)]
    assert read_state(raw[0]).gnu_unique and read_state(fixed[0]).gnu_unique == ()
    run = lambda paths: run_in_legacy_subinterpreters(  # noqa: E731
        [_IMPORT_BY_FILE.format(module="gnu_unique_cpp", path=str(p)) for p in paths])
    assert run(raw) == [[1, 2], [3, 4]]
    assert run(fixed) == [[1, 2], [1, 2]]


def test_private_copy_is_made_once_and_named_per_interpreter(built_fixtures, tmp_path):
    source = built_fixtures("single_phase_static")
    first = make_private_copy(source, "single_phase_static", "7-1", tmp_path)
    assert first == copy_path(source, "single_phase_static", "7-1", tmp_path)
    assert first.name.startswith("single_phase_static.ik7-1.") and first.name.endswith(".so")
    mtime = first.stat().st_mtime_ns
    assert make_private_copy(source, "single_phase_static", "7-1", tmp_path) == first
    assert first.stat().st_mtime_ns == mtime
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".copy-")]


def test_probe_legacy_before_and_after(built_fixtures):
    source = built_fixtures("single_phase_static")
    before = probe_legacy(source, "single_phase_static", 2, with_copies=False)
    after = probe_legacy(source, "single_phase_static", 2, with_copies=True)
    assert before["status"] == "shared_state" and before["images"] == 1, json.dumps(before)
    assert after["status"] == "ok" and after["images"] == 2, json.dumps(after)


_BUMP_FIXTURES = ["single_phase_static", "gnu_unique_cpp", "clash_a"]


@pytest.mark.parametrize("name", _BUMP_FIXTURES)
def test_patched_output_gives_each_interpreter_its_own_state(name, capsys, tmp_path, fixture_copy):
    """For each fixture that keeps a counter in C globals: imported from the input, N=2 legacy
    subinterpreters count together; imported from the patch output through the copies manifest,
    each counts alone."""
    from interpkit.cli import main

    source = fixture_copy(name)
    out = tmp_path / "out"
    assert main(["patch", str(source), "-o", str(out), "--backend", "copies", "--no-verify"]) == 0
    capsys.readouterr()
    manifest = out / "interpkit-copies.json"
    assert name in json.loads(manifest.read_text())["modules"]
    before = run_in_legacy_subinterpreters([_IMPORT_BY_FILE.format(module=name, path=str(source))] * 2)
    after_body = f"""
import importlib, interpkit.shims.private_copy
interpkit.shims.private_copy.install_from_manifest({str(manifest)!r}, {str(tmp_path / 'copies')!r})
mod = importlib.import_module({name!r})
RESULT = [mod.bump(), mod.bump()]
"""
    after = run_in_legacy_subinterpreters([after_body] * 2)
    assert before == [[1, 2], [3, 4]]
    assert after == [[1, 2], [1, 2]]
