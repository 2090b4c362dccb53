"""Rebuild from source with hardening flags: the re-scan shows what the flags removed."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from interpkit.cli import main
from interpkit.shims.apply import tree_sha256
from interpkit.shims.rebuild import is_source
from interpkit.shims.relink import read_state

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ext"

SETUP_PY = """\
from setuptools import Extension, setup

setup(name="ikrebuild", version="0.1", ext_modules=[
    Extension("gnu_unique_cpp", ["module.cpp"]),
    Extension("clash_a", ["clash_a.c"]),
])
"""


@pytest.mark.slow
def test_rebuild_removes_gnu_unique_and_extra_exports(capsys, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(FIXTURES / "gnu_unique_cpp" / "module.cpp", source / "module.cpp")
    shutil.copy(FIXTURES / "clash_a" / "module.c", source / "clash_a.c")
    (source / "setup.py").write_text(SETUP_PY)
    assert is_source(source)
    digest = tree_sha256(source)
    code = main(["patch", str(source), "-o", str(tmp_path / "out"), "--backend", "copies", "--no-verify",
                 "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data
    assert tree_sha256(source) == digest and sorted(p.name for p in source.iterdir()) == ["clash_a.c", "module.cpp", "setup.py"]
    result = data["results"][0]
    changes = {c["member"].split(".", 1)[0]: c for c in result["rebuild"]}
    assert "IK206" in changes["gnu_unique_cpp"]["removed_by_flags"]
    assert "IK303" in changes["clash_a"]["removed_by_flags"]          # interpkit_shared_counter hidden
    wheel = Path(result["output"])
    assert wheel.name.startswith("ikrebuild-0.1-cp") and wheel.suffix == ".whl"
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.startswith("gnu_unique_cpp."))
        (tmp_path / name).write_bytes(zf.read(name))
        clash = next(n for n in zf.namelist() if n.startswith("clash_a."))
        (tmp_path / clash).write_bytes(zf.read(clash))
    assert read_state(tmp_path / name).gnu_unique == ()
    assert read_state(tmp_path / clash).exports == ("PyInit_clash_a",)


def test_failed_build_is_one_line(capsys, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "setup.py").write_text("raise SystemExit('this project does not build')\n")
    code = main(["patch", str(source), "-o", str(tmp_path / "out"), "--no-verify"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot rebuild src (pip wheel failed" in err


def test_dry_run_and_check_on_a_source_tree_build_nothing(capsys, tmp_path):
    """Issue 24 (12): `patch --dry-run` on a source tree rebuilt it (minutes, twice pip wheel).
    A tree whose build would fail shows that nothing is built: the plan says a rebuild would
    run, --check exits 1 for it, and the tree is untouched."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "setup.py").write_text("raise SystemExit('this project does not build')\n")
    digest = tree_sha256(source)
    code = main(["patch", str(source), "--dry-run", "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data
    [result] = data["results"]
    assert result["rebuild_planned"] and result["output"] is None and "rebuild" not in result
    assert any(note.startswith("would rebuild src with ") for note in result["notes"])
    assert data["summary"]["edits"] == 1 and data["summary"]["fixed"] == 0
    assert main(["patch", str(source), "--check"]) == 1
    capsys.readouterr()
    assert tree_sha256(source) == digest and [p.name for p in source.iterdir()] == ["setup.py"]


def test_the_rebuild_header_never_calls_a_code_both_removed_and_kept():
    """Issue 24 (12): one IK203 symbol gone and another kept read "removed IK203" in the header
    while the table still listed IK203; the summary counted none of what the flags fixed."""
    from interpkit.shims.rebuild import rebuild_changes

    before = {"m.so": {("IK203", "a"), ("IK203", "b"), ("IK206", "u")}}
    after = {"m.so": {("IK203", "b")}}
    [change] = rebuild_changes(before, after)
    assert change == {"member": "m.so", "removed_by_flags": ["IK206"], "added_by_flags": [],
                      "kept": ["IK203"], "findings_removed": 2}
