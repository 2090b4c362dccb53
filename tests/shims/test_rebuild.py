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
