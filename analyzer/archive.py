"""Safe reading of zip-based archives (wheels, torch.package): nothing lands outside the target.

Hostile archives are refused with one line each: absolute or `..` paths, symlinks,
duplicate names, and members whose real size exceeds what they declare or the budget.
"""
from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from interpkit.core.errors import ArchiveError

MAX_TOTAL_BYTES = 4 << 30      # torch wheels unpack to ~1 GB; 4 GiB leaves room, stops bombs
MAX_RATIO = 250                 # compressed → uncompressed; real wheels stay far below
_CHUNK = 1 << 20


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why this member cannot be extracted safely, or None."""
    name = info.filename
    if not name or "\x00" in name:
        return "empty or NUL in member name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    if "\\" in name:
        return f"backslash in member name {name!r}"
    if any(part == ".." for part in PurePosixPath(name).parts):
        return f"path escapes the archive {name!r}"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"symlink member {name!r}"
    return None


def check_archive(zf: zipfile.ZipFile, where: Path) -> list[zipfile.ZipInfo]:
    """Validate every member name and the declared sizes; returns the members."""
    seen: set[str] = set()
    total = 0
    members = zf.infolist()
    for info in members:
        problem = member_problem(info)
        if problem:
            raise ArchiveError(f"cannot read {where} ({problem})")
        key = info.filename.rstrip("/")
        if key in seen:
            raise ArchiveError(f"cannot read {where} (duplicate member {info.filename!r})")
        seen.add(key)
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise ArchiveError(f"cannot read {where} (declares more than {MAX_TOTAL_BYTES >> 30} GiB uncompressed)")
        if info.compress_size and info.file_size / max(info.compress_size, 1) > MAX_RATIO and info.file_size > (16 << 20):
            raise ArchiveError(f"cannot read {where} (member {info.filename!r} compresses {info.file_size // max(info.compress_size, 1)}:1, a zip bomb)")
    return members


def open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveError(f"cannot read {path} (not a valid zip archive: {exc})") from None


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: Path) -> bytes:
    """Read one member, refusing more bytes than it declares (a lying header is a bomb)."""
    chunks, size = [], 0
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > info.file_size:
                    raise ArchiveError(f"cannot read {where} (member {info.filename!r} is larger than it declares)")
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ArchiveError(f"cannot read {where} (member {info.filename!r}: {exc})") from None
    return b"".join(chunks)


def safe_extract(path: Path, dest: Path) -> list[Path]:
    """Extract a zip archive under dest; everything is checked before the first byte is written."""
    dest = Path(dest)
    with open_archive(path) as zf:
        members = check_archive(zf, path)
        written: list[Path] = []
        root = dest.resolve()
        try:
            for info in members:
                target = (dest / info.filename).resolve()
                if root != target and root not in target.parents:
                    raise ArchiveError(f"cannot read {path} (path escapes the archive {info.filename!r})")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                data = read_member(zf, info, path)
                target.write_bytes(data)
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(target, mode | stat.S_IRUSR | stat.S_IWUSR)
                written.append(target)
        except ArchiveError:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise ArchiveError(f"cannot extract {path} ({exc.strerror or exc})") from None
    return written
