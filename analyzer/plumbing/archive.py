"""Safe reading of zip-based archives (wheels, torch.package): nothing lands outside the target.

Hostile archives are refused with one line each: absolute or `..` paths, symlinks,
duplicate names, and members whose real size exceeds what they declare or the budget.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

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


# -- what a .pt file is ----------------------------------------------------------------------------

TORCHSCRIPT = "TorchScript module (torch.jit.save)"
TORCH_SAVE = "torch.save file (a state_dict or other pickled objects)"
TORCH_SAVE_LEGACY = "torch.save file in the legacy pickle format"
# torch.save's legacy (non-zip) format starts with a pickled long: this magic number.
_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def serialized_torch_format(path: Path) -> str | None:
    """What a `.pt` file is when PyTorch wrote it but not as a torch.package archive, else None.

    Read from the member names only (nothing is unpickled): torch.package archives have
    `<top>/.data/version`; TorchScript has `<top>/constants.pkl` and `<top>/code/`; a zip
    torch.save has `<top>/data.pkl` and neither.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(2 + len(_LEGACY_MAGIC))
    except OSError:
        return None
    if head[:1] == b"\x80" and head[2:] == _LEGACY_MAGIC:
        return TORCH_SAVE_LEGACY
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    inside = {PurePosixPath(n).parts[1] for n in names if len(PurePosixPath(n).parts) > 1}
    if ".data" in inside and any(n.endswith("/.data/version") for n in names):
        return None  # a torch.package archive
    if "constants.pkl" in inside and "code" in inside:
        return TORCHSCRIPT
    if "data.pkl" in inside:
        return TORCH_SAVE
    return None


# -- wheels unpacked for the duration of a command ---------------------------------------------------

@dataclass
class Unpacked:
    """Command-line paths with each wheel replaced by the folder it was unpacked into."""

    paths: list[Path]
    errors: list[tuple[Path, str]]                     # wheels that could not be unpacked, and why
    roots: dict[str, Path] = field(default_factory=dict)  # temp folder -> wheel
    wheels: list[Path] = field(default_factory=list)      # every wheel found, unpacked or not

    def display(self, path) -> str:
        """A path inside an unpacked wheel as `wheel!member` (what scan prints); others unchanged."""
        text = str(path)
        for root, wheel in self.roots.items():
            if text == root or text.startswith(root + os.sep):
                return f"{wheel}!{os.path.relpath(text, root)}" if text != root else str(wheel)
        return text

    def is_wheel_copy(self, path) -> bool:
        """A scan result for one of the unpacked wheels themselves (`wheel` or `wheel!member`,
        from scanning a folder that holds it): the unpacked folder stands for it."""
        text = str(path)
        return any(text == str(wheel) or text.startswith(f"{wheel}!") for wheel in self.wheels)

    def display_text(self, text: str) -> str:
        """A message that names files inside unpacked wheels, with those named as `wheel!member`."""
        for root, wheel in self.roots.items():
            text = text.replace(root + os.sep, f"{wheel}!").replace(root, str(wheel))
        return text


@contextlib.contextmanager
def unpacked_wheels(paths) -> Iterator[Unpacked]:
    """Unpack every `.whl` among paths, and inside the folders among them, safely (checked
    before the first byte is written) into temporary folders that live as long as the `with`
    block, so their extensions can be loaded. Folders stay in `paths` as they are; a caller
    that scans them drops the in-memory copies of their wheels with `Unpacked.is_wheel_copy`."""
    with contextlib.ExitStack() as stack:
        result = Unpacked(paths=[], errors=[])
        wheels: list[Path] = []
        for path in map(Path, paths):
            if path.is_dir():
                result.paths.append(path)
                wheels.extend(_wheels_under(path))
            elif path.suffix.lower() == ".whl" and path.is_file():
                wheels.append(path)
            else:
                result.paths.append(path)
        result.wheels = list(dict.fromkeys(wheels))
        for wheel in result.wheels:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="interpkit-wheel-")))
            try:
                safe_extract(wheel, folder)
            except ArchiveError as exc:
                result.errors.append((wheel, str(exc)))
                continue
            result.roots[str(folder)] = wheel
            result.paths.append(folder)
        yield result


def _wheels_under(folder: Path) -> list[Path]:
    """Wheel files under folder; links to folders are not followed (as the scan walks)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        found.extend(Path(root) / name for name in sorted(files)
                     if name.lower().endswith(".whl") and os.path.isfile(os.path.join(root, name)))
    return found
