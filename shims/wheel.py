"""Repair a wheel: unpack it safely, patch its binaries, rewrite RECORD, repack with the same name and tags.

Like ``auditwheel repair``, the result is a new wheel file with the same name (so the same
tags): WHEEL and METADATA are untouched, every changed member gets its new sha256 and size in
RECORD, and the members keep their order, timestamps and permissions. A wheel that needs no
edit is copied byte for byte, so repairing a repaired wheel changes nothing; repacking is
deterministic, so repairing the same wheel twice gives the same bytes.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

from interpkit.analyzer.plumbing.archive import check_archive, open_archive, safe_extract
from interpkit.core.errors import ArchiveError
from interpkit.shims.tree import COPIES_MANIFEST, patch_tree

RECORD_SUFFIX = ".dist-info/RECORD"


def record_hash(data: bytes) -> str:
    """The RECORD spelling of a digest: sha256=<urlsafe base64, no padding>."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def _dist_info(members: list[zipfile.ZipInfo], wheel: Path) -> str:
    names = {m.filename.split("/", 1)[0] for m in members if m.filename.split("/", 1)[0].endswith(".dist-info")}
    if len(names) != 1:
        raise ArchiveError(f"cannot repair {wheel} (expected one .dist-info folder, found {len(names)})")
    return names.pop()


def record_problem(tree: Path, members: list[zipfile.ZipInfo], dist_info: str) -> str | None:
    """Why the unpacked wheel's RECORD cannot be trusted, or None.

    Like pip and `wheel unpack`, a wheel is refused when RECORD is missing or unreadable, when a
    file is not listed, or when a listed hash or size does not match: repairing such a wheel
    would sign contents nobody vouched for.
    """
    record_name = f"{dist_info}/RECORD"
    unsigned = {record_name, f"{dist_info}/RECORD.jws", f"{dist_info}/RECORD.p7s"}
    try:
        text = (tree / record_name).read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text)))
    except FileNotFoundError:
        return f"no {record_name}"
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        return f"unreadable {record_name}: {' '.join(str(exc).split())[:120]}"
    listed: dict[str, tuple[str, str]] = {}
    for row in rows:
        if not row:
            continue
        if len(row) != 3:
            return f"{record_name} has a row with {len(row)} fields instead of 3"
        listed[row[0]] = (row[1], row[2])
    for info in members:
        if info.is_dir() or info.filename in unsigned:
            continue
        entry = listed.get(info.filename)
        if entry is None:
            return f"{info.filename!r} is not listed in {record_name}"
        digest, size = entry
        data = (tree / info.filename).read_bytes()
        if size and size != str(len(data)):
            return f"{info.filename!r} is {len(data)} bytes, {record_name} says {size}"
        if not digest:
            return f"{info.filename!r} has no hash in {record_name}"
        algorithm, _, expected = digest.partition("=")
        if algorithm not in ("sha256", "sha384", "sha512"):
            return f"{info.filename!r} has a {algorithm!r} hash in {record_name} (sha256 or stronger required)"
        actual = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=").decode("ascii")
        if actual != expected.rstrip("="):
            return f"{info.filename!r} does not match its hash in {record_name}"
    return None


def repair_wheel(wheel: Path, staging: Path, options, outcome) -> Path:
    """Patch the wheel's tree in staging; returns the staged wheel to rename into place."""
    wheel = Path(wheel)
    with open_archive(wheel) as zf:
        members = check_archive(zf, wheel)
    dist_info = _dist_info(members, wheel)
    tree = staging / "tree"
    tree.mkdir()
    safe_extract(wheel, tree)
    problem = record_problem(tree, members, dist_info)
    if problem is not None:
        raise ArchiveError(f"cannot repair {wheel} ({problem})")
    outcome.files, outcome.changed = patch_tree(tree, options)
    for file in outcome.files:
        file.relative = f"{wheel.name}!{file.relative}"
    manifest = tree / COPIES_MANIFEST
    extra: list[str] = []
    if manifest.is_file():
        # Installed beside the wheel's RECORD; module paths become relative to that folder.
        data = json.loads(manifest.read_text())
        data["modules"] = {name: f"../{rel}" for name, rel in data["modules"].items()}
        target = tree / dist_info / COPIES_MANIFEST
        target.write_text(json.dumps(data, indent=2) + "\n")
        manifest.unlink()
        extra.append(f"{dist_info}/{COPIES_MANIFEST}")
        existing = {m.filename for m in members}
        extra = [e for e in extra if e not in existing]
        outcome.changed = outcome.changed or bool(extra) or target.read_bytes() != _member_bytes(wheel, f"{dist_info}/{COPIES_MANIFEST}")
    staged = staging / wheel.name
    if not outcome.changed:
        shutil.copyfile(wheel, staged)
        return staged
    _repack(wheel, members, tree, dist_info, extra, staged)
    return staged


def _member_bytes(wheel: Path, name: str) -> bytes | None:
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(name)
        except KeyError:
            return None


def _repack(wheel: Path, members: list[zipfile.ZipInfo], tree: Path, dist_info: str, extra: list[str], staged: Path) -> None:
    record_name = f"{dist_info}/RECORD"
    order = [m for m in members if m.filename != record_name and not m.is_dir()]
    template = order[0] if order else None
    infos: list[tuple[zipfile.ZipInfo, bytes]] = []
    for info in order:
        infos.append((_copy_info(info), (tree / info.filename).read_bytes()))
    for name in extra:
        info = zipfile.ZipInfo(name, date_time=template.date_time if template else (1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        infos.append((info, (tree / name).read_bytes()))
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for info, data in infos:
        writer.writerow([info.filename, record_hash(data), len(data)])
    writer.writerow([record_name, "", ""])
    record_info = next((_copy_info(m) for m in members if m.filename == record_name), None) or \
        zipfile.ZipInfo(record_name, date_time=template.date_time if template else (1980, 1, 1, 0, 0, 0))
    infos.append((record_info, rows.getvalue().encode("utf-8")))
    tmp = staged.with_name(staged.name + ".part")
    with zipfile.ZipFile(tmp, "w") as out:
        for info, data in infos:
            out.writestr(info, data, compress_type=info.compress_type, compresslevel=6)
    tmp.replace(staged)


def _copy_info(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """A fresh ZipInfo with the member's name, time, permissions and compression, nothing stale."""
    new = zipfile.ZipInfo(info.filename, date_time=info.date_time)
    new.external_attr = info.external_attr
    new.compress_type = info.compress_type if info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) \
        else zipfile.ZIP_DEFLATED
    new.create_system = info.create_system
    return new
