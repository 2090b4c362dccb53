"""Wheel repair: a wheel around built fixtures, repaired, installed with pip into a fresh venv, verified."""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from interpkit.cli import main
from interpkit.shims.relink import read_state

WHEEL_NAME = "ikfix-0.1-cp311-cp311-linux_x86_64.whl"
TAG = "cp311-cp311-linux_x86_64"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def hand_written_wheel(folder: Path, extensions: list[Path]) -> Path:
    """The smallest valid wheel around compiled fixtures: package `ikfix`, METADATA, WHEEL, RECORD."""
    members = {"ikfix/__init__.py": b""}
    members.update({f"ikfix/{ext.name}": ext.read_bytes() for ext in extensions})
    members["ikfix-0.1.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: ikfix\nVersion: 0.1\n"
    members["ikfix-0.1.dist-info/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: interpkit-tests\nRoot-Is-Purelib: false\n"
                                            f"Tag: {TAG}\n").encode()
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in members.items())
    members["ikfix-0.1.dist-info/RECORD"] = (record + "ikfix-0.1.dist-info/RECORD,,\n").encode()
    wheel = folder / WHEEL_NAME
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return wheel


def check_record(wheel: Path) -> dict[str, bytes]:
    """Every member is in RECORD with its real hash and size; returns the members."""
    with zipfile.ZipFile(wheel) as zf:
        data = {name: zf.read(name) for name in zf.namelist()}
    record_name = next(n for n in data if n.endswith(".dist-info/RECORD"))
    rows = list(csv.reader(io.StringIO(data[record_name].decode())))
    listed = {row[0]: row for row in rows}
    assert set(listed) == set(data)
    for name, content in data.items():
        if name != record_name:
            assert listed[name][1] == _record_hash(content), name
            assert int(listed[name][2]) == len(content), name
    return data


@pytest.mark.slow
def test_repaired_wheel_installs_with_pip_and_verifies(capsys, tmp_path, built_fixtures):
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the hand-written wheel is tagged cp311")
    extensions = [built_fixtures("gnu_unique_cpp"), built_fixtures("single_phase_static")]
    wheel = hand_written_wheel(tmp_path, extensions)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    out = tmp_path / "out"
    code = main(["patch", str(wheel), "-o", str(out), "--backend", "copies", "--backend", "namespaces",
                 "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == digest
    repaired = out / WHEEL_NAME
    members = check_record(repaired)
    with zipfile.ZipFile(wheel) as zf:
        assert members["ikfix-0.1.dist-info/WHEEL"] == zf.read("ikfix-0.1.dist-info/WHEEL")   # tags kept
    by_member = {f["path"].split("!", 1)[1]: f for f in data["results"][0]["files"]}
    unique = by_member[f"ikfix/{extensions[0].name}"]
    assert {f["code"]: f["after"] for f in unique["findings"]}["IK206"] == "fixed"
    assert unique["verify"]["namespaces"] == {"before": "ok", "after": "ok"}
    single = by_member[f"ikfix/{extensions[1].name}"]
    assert single["verify"]["copies"] == {"before": "shared_state", "after": "ok"}

    # Idempotent: repairing the repaired wheel, or the original again, gives the same bytes.
    assert main(["patch", str(repaired), "-o", str(tmp_path / "again"), "--no-verify", "--backend", "copies"]) == 0
    assert (tmp_path / "again" / WHEEL_NAME).read_bytes() == repaired.read_bytes()
    assert main(["patch", str(wheel), "-o", str(tmp_path / "twice"), "--no-verify", "--backend", "copies",
                 "--backend", "namespaces"]) == 0
    assert (tmp_path / "twice" / WHEEL_NAME).read_bytes() == repaired.read_bytes()
    capsys.readouterr()

    # Install into a fresh venv with pip (offline, no deps) and use it there.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    _see_this_environment(python)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps",
                    "--disable-pip-version-check", "-q", str(repaired)], check=True)
    site = Path(subprocess.run([str(python), "-c", "import ikfix, os; print(os.path.dirname(os.path.dirname(ikfix.__file__)))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    installed = site / "ikfix" / extensions[0].name
    assert site.is_relative_to(venv) and read_state(installed).gnu_unique == ()
    use = subprocess.run([str(python), "-c", "import ikfix.gnu_unique_cpp as m; print(m.bump(), m.bump())"],
                         capture_output=True, text=True)
    assert use.stdout.split() == ["1", "2"], use.stderr

    # Verify the installed modules in the real runtimes.
    from interpkit.native.sandbox.probe import probe_module
    from interpkit.shims.private_copy import probe_legacy

    assert probe_module("ikfix.gnu_unique_cpp", path=site, interpreters=2).status == "ok"
    manifest = site / "ikfix-0.1.dist-info" / "interpkit-copies.json"
    modules = json.loads(manifest.read_text())["modules"]
    assert set(modules) == {"ikfix.gnu_unique_cpp", "ikfix.single_phase_static"}
    assert (manifest.parent / modules["ikfix.single_phase_static"]).resolve() == (site / "ikfix" / extensions[1].name).resolve()
    installed_single = site / "ikfix" / extensions[1].name
    assert probe_legacy(installed_single, "ikfix.single_phase_static", 2, with_copies=True,
                        python=str(python))["status"] == "ok"


def _see_this_environment(python: Path) -> None:
    """Let a new venv import what this environment has (interpkit, pyelftools ...) after its own packages.

    `--system-site-packages` would add the *base* Python's site-packages, which lacks them when
    the tests themselves run from a venv; a .pth that runs site.addsitedir also processes this
    environment's own .pth files (an editable interpkit install).
    """
    import site

    dirs = [d for d in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(d)]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib).mkdir(parents=True, exist_ok=True)
    (Path(purelib) / "_interpkit_tests_outer.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n")


def test_bad_wheel_is_one_line_error(capsys, tmp_path):
    bad = tmp_path / "broken-0.1-py3-none-any.whl"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    code = main(["patch", str(bad), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a valid zip archive" in err  # unusable input
    assert not any((tmp_path / "out").iterdir())
