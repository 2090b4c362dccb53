"""Hostile wheels and torch.package archives: refused with one clear line, nothing written outside.

Each archive is built at test time with zipfile (sizes patched in place where a header must lie).
Every run goes through the real CLI (`scan`, `patch`), and the folders around the run are compared
before and after.
"""
from __future__ import annotations

import base64
import hashlib
import json
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.hardening.hardening_hostile import (  # noqa: E402
    DIST,
    WHEEL_NAME,
    assert_no_traceback,
    lying_size_zip,
    record_hash,
    run_cli,
    snapshot,
    wheel_members,
    zip_with_members,
)

def package_members(extra: list[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    """A torch.package archive's skeleton (.data/version marks it) plus `extra`."""
    return [("model/.data/version", b"3\n"), ("model/.data/extern_modules", b"torch\n"),
            ("model/net.py", b"import torch\n"), *extra]


@pytest.fixture
def escape():
    """Unique names a hostile member tries to write outside the extraction folder."""
    tag = f"interpkit-escape-{uuid.uuid4().hex[:12]}"
    targets = [Path("/tmp") / tag, Path("/tmp") / f"{tag}-abs"]
    yield tag, targets
    for target in targets:
        assert not target.exists(), f"{target} was written outside the output folder"


HOSTILE = {
    "zip_slip": lambda tag: ([(f"../{tag}", b"escaped"), (f"evil/../../../../../../../tmp/{tag}", b"escaped")], set()),
    "absolute_path": lambda tag: ([(f"/tmp/{tag}-abs", b"escaped")], set()),
    "backslash_path": lambda tag: ([(f"..\\..\\{tag}", b"escaped")], set()),
    "symlink_member": lambda tag: ([("evil/link", b"/etc/passwd")], {"evil/link"}),
    "symlink_then_write_through_it": lambda tag: ([("evil/dir", b"/tmp"), (f"evil/dir/{tag}", b"escaped")], {"evil/dir"}),
    "duplicate_names": lambda tag: ([("evil/__init__.py", b"import os\n")], set()),
}
EXPECTED_REASON = {
    "zip_slip": "escapes the archive", "absolute_path": "absolute path", "backslash_path": "backslash",
    "symlink_member": "symlink member", "symlink_then_write_through_it": "symlink member",
    "duplicate_names": "duplicate member",
}


def hostile_wheel(folder: Path, kind: str, tag: str) -> Path:
    extra, links = HOSTILE[kind](tag)
    return zip_with_members(folder / WHEEL_NAME, wheel_members(extra), symlink=links)


def hostile_package(folder: Path, kind: str, tag: str) -> Path:
    extra, links = HOSTILE[kind](tag)
    if kind == "duplicate_names":
        extra = [("model/net.py", b"import os\n")]
    return zip_with_members(folder / "model.pt", package_members(extra), symlink=links)


def scan(*paths) -> tuple[int, dict]:
    proc = run_cli("scan", "--format", "json", "--no-closure", *paths)
    assert_no_traceback(proc)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def one_line_error(report: dict, path: Path) -> str:
    [entry] = [f for f in report["files"] if f["path"] == str(path)]
    assert entry["kind"] == "error"
    assert "\n" not in entry["error"] and str(path) in entry["error"]
    return entry["error"]


# --------------------------------------------------------------------------- scan

@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_scan_refuses_hostile_wheel(tmp_path, escape, kind, built_fixtures):
    tag, _ = escape
    inputs = tmp_path / "in"
    inputs.mkdir()
    wheel = hostile_wheel(inputs, kind, tag)
    good = built_fixtures("multi_phase_no_slot")
    around = snapshot(tmp_path.parent)
    code, report = scan(wheel, good)
    assert code == 1
    assert EXPECTED_REASON[kind] in one_line_error(report, wheel)
    assert any(f["path"] == str(good) and f["kind"] == "extension" for f in report["files"])  # the scan went on
    assert snapshot(tmp_path.parent) == around


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_scan_refuses_hostile_package_archive(tmp_path, escape, kind):
    tag, _ = escape
    archive = hostile_package(tmp_path, kind, tag)
    around = snapshot(tmp_path.parent)
    _, report = scan(archive)
    assert EXPECTED_REASON[kind] in one_line_error(report, archive)
    assert snapshot(tmp_path.parent) == around


def test_scan_reads_an_honest_package_archive(tmp_path):
    """The control: the same skeleton without hostile members is read."""
    archive = zip_with_members(tmp_path / "model.pt", package_members())
    _, report = scan(archive)
    kinds = {Path(f["path"].split("!")[-1]).name: f["kind"] for f in report["files"]}
    assert kinds == {"model.pt": "archive", "net.py": "python"}


@pytest.mark.parametrize("suffix", [".whl", ".pt"])
def test_zip_bomb_declared_size(tmp_path, suffix):
    """A member that honestly inflates 1000:1 to 64 MiB is refused from its header, before inflating."""
    bomb = [("evil/bomb.py" if suffix == ".whl" else "model/bomb.py", bytes(64 << 20))]
    members = wheel_members(bomb) if suffix == ".whl" else package_members(bomb)
    archive = zip_with_members(tmp_path / (WHEEL_NAME if suffix == ".whl" else "model.pt"), members)
    assert archive.stat().st_size < 1 << 20
    _, report = scan(archive)
    assert "zip bomb" in one_line_error(report, archive)


@pytest.mark.parametrize("suffix", [".whl", ".pt"])
def test_zip_bomb_lying_header(tmp_path, suffix):
    """A member that declares 100 bytes but inflates to 8 MiB: never read past what it declares."""
    name = "evil/liar.py" if suffix == ".whl" else "model/liar.py"
    skeleton = wheel_members() if suffix == ".whl" else package_members()
    archive = lying_size_zip(tmp_path / (WHEEL_NAME if suffix == ".whl" else "model.pt"), name,
                             b"#" * (8 << 20), 100, extra=skeleton)
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo(name).file_size == 100  # the lie is in place
    _, report = scan(archive)
    error = one_line_error(report, archive)
    assert "liar.py" in error


@pytest.mark.parametrize("suffix", [".whl", ".pt"])
@pytest.mark.parametrize("content", [b"", b"not a zip at all\n", b"PK\x03\x04" + bytes(200)], ids=["empty", "text", "bad-zip"])
def test_not_a_zip(tmp_path, suffix, content):
    archive = tmp_path / f"broken{suffix}"
    archive.write_bytes(content)
    _, report = scan(archive)
    assert "not a valid zip archive" in one_line_error(report, archive)


def test_truncated_wheel(tmp_path, built_fixtures):
    honest = zip_with_members(tmp_path / "whole.whl",
                              wheel_members([("evil/mod.so", built_fixtures("clean").read_bytes())]))
    data = honest.read_bytes()
    for cut in (len(data) // 3, len(data) - 30):
        archive = tmp_path / f"cut{cut}" / WHEEL_NAME
        archive.parent.mkdir()
        archive.write_bytes(data[:cut])
        _, report = scan(archive)
        one_line_error(report, archive)


# --------------------------------------------------------------------------- patch (wheel in, wheel out)

def patch(wheel: Path, outdir: Path):
    proc = run_cli("patch", wheel, "-o", outdir, "--no-verify", "--format", "json")
    assert_no_traceback(proc)
    return proc


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_patch_refuses_hostile_wheel(tmp_path, escape, kind):
    tag, _ = escape
    inputs = tmp_path / "in"
    inputs.mkdir()
    wheel = hostile_wheel(inputs, kind, tag)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    out = tmp_path / "out"
    out.mkdir()
    outside = str(Path(tmp_path.name) / "out")  # only this folder may change (staging comes and goes)
    around = {k: v for k, v in snapshot(tmp_path.parent).items() if k != outside}
    proc = patch(wheel, out)
    assert proc.returncode == 2  # unusable input
    assert proc.stderr.startswith("interpkit: error: cannot ") and EXPECTED_REASON[kind] in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert list(out.iterdir()) == []  # no wheel, no staging folder left behind
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == digest
    assert {k: v for k, v in snapshot(tmp_path.parent).items() if k != outside} == around


RECORD_PROBLEMS = {
    "missing": (False, "no evil-0.1.dist-info/RECORD"),
    "empty": ("", "is not listed in"),
    "wrong_hash": (None, "does not match its hash"),
    "wrong_size": (None, "bytes, evil-0.1.dist-info/RECORD says"),
    "md5": (None, "sha256 or stronger required"),
    "unlisted_member": (None, "is not listed in"),
    "bad_row": ("evil/__init__.py\n", "instead of 3"),
}


def record_for(problem: str, members: list[tuple[str, bytes]]) -> bool | str:
    given, _ = RECORD_PROBLEMS[problem]
    if given is not None:
        return given
    rows = {name: [name, record_hash(data), str(len(data))] for name, data in members}
    if problem == "wrong_hash":
        rows["evil/__init__.py"][1] = record_hash(b"something else")
    elif problem == "wrong_size":
        rows["evil/__init__.py"][2] = "12345"
    elif problem == "md5":
        rows["evil/__init__.py"][1] = "md5=" + base64.urlsafe_b64encode(hashlib.md5(b"").digest()).decode()
    elif problem == "unlisted_member":
        rows.pop("evil/__init__.py")
    return "".join(",".join(row) + "\n" for row in rows.values()) + f"{DIST}/RECORD,,\n"


@pytest.mark.parametrize("problem", sorted(RECORD_PROBLEMS))
def test_patch_refuses_bad_record(tmp_path, problem, built_fixtures):
    extension = ("evil/gnu_unique_cpp.cpython-311-x86_64-linux-gnu.so", built_fixtures("gnu_unique_cpp").read_bytes())
    base = wheel_members([extension], record=False)
    wheel = zip_with_members(tmp_path / WHEEL_NAME, wheel_members([extension], record=record_for(problem, base)))
    out = tmp_path / "out"
    proc = patch(wheel, out)
    assert proc.returncode == 2, proc.stdout[-2000:]  # unusable input
    assert proc.stderr.startswith(f"interpkit: error: cannot repair {wheel}")
    assert RECORD_PROBLEMS[problem][1] in proc.stderr and proc.stderr.count("\n") == 1
    assert list(out.iterdir()) == []


def test_patch_honest_wheel_round_trip(tmp_path, built_fixtures):
    """The control for the RECORD checks: the same wheel with an honest RECORD is repaired."""
    extension = ("evil/gnu_unique_cpp.cpython-311-x86_64-linux-gnu.so", built_fixtures("gnu_unique_cpp").read_bytes())
    wheel = zip_with_members(tmp_path / WHEEL_NAME, wheel_members([extension]))
    out = tmp_path / "out"
    proc = patch(wheel, out)
    assert_no_traceback(proc)
    assert [p.name for p in out.iterdir()] == [WHEEL_NAME], proc.stderr
    with zipfile.ZipFile(out / WHEEL_NAME) as zf:
        names = zf.namelist()
    assert f"{DIST}/RECORD" in names and extension[0] in names


def test_scan_wheel_with_a_corrupt_member_reports_that_member(tmp_path, built_fixtures):
    """A hostile binary inside an honest wheel costs one `wheel!member` error entry; its neighbour is read."""
    good = built_fixtures("multi_phase_no_slot")
    corrupt = bytearray(built_fixtures("clean").read_bytes())
    corrupt[40:48] = (1 << 62).to_bytes(8, "little")  # e_shoff far past the end
    wheel = zip_with_members(tmp_path / WHEEL_NAME, wheel_members([
        (f"evil/{good.name}", good.read_bytes()),
        ("evil/broken.cpython-311-x86_64-linux-gnu.so", bytes(corrupt)),
    ]))
    around = snapshot(tmp_path.parent)
    _, report = scan(wheel)
    by_member = {f["path"].split("!", 1)[-1]: f for f in report["files"]}
    assert by_member[str(wheel)]["kind"] == "archive"
    assert by_member[f"evil/{good.name}"]["kind"] == "extension"
    broken = by_member["evil/broken.cpython-311-x86_64-linux-gnu.so"]
    assert broken["kind"] == "error" and "\n" not in broken["error"]
    assert snapshot(tmp_path.parent) == around


@pytest.mark.parametrize("output_format", ["json", "sarif"])
def test_wheel_reports_never_point_into_the_deleted_temp_dir(tmp_path, built_fixtures, output_format):
    """Member paths, finding locations and error lines name `wheel!member`, not the unpack folder."""
    unique = built_fixtures("gnu_unique_cpp")
    corrupt = bytes(built_fixtures("clean").read_bytes()[:300])
    wheel = zip_with_members(tmp_path / WHEEL_NAME, wheel_members([
        (f"evil/{unique.name}", unique.read_bytes()), ("evil/broken.cpython-311-x86_64-linux-gnu.so", corrupt)]))
    proc = run_cli("scan", "--format", output_format, "--no-closure", wheel)
    assert_no_traceback(proc)
    assert proc.returncode == 1
    assert "interpkit-wheel-" not in proc.stdout
    assert f"{wheel}!evil/{unique.name}" in proc.stdout and f"{wheel}!evil/broken" in proc.stdout
