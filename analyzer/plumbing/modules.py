"""Where an extension file sits in the import system: its dotted name and its sys.path root."""
from __future__ import annotations

import re
from pathlib import Path

# foo.cpython-311-x86_64-linux-gnu.so, foo.abi3.so, foo.so
_EXT_RE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<tag>[^.]+))?\.so$")


def extension_tag(path: Path) -> str | None:
    """The ABI tag in the file name (`cpython-311-x86_64-linux-gnu`, `abi3`), or None."""
    match = _EXT_RE.match(Path(path).name)
    return match.group("tag") if match else None


def enclosing_packages(folder: Path) -> tuple[list[str], Path]:
    """Package names from `folder` outwards (innermost first) and the sys.path entry above them.

    Walk up while the folder is a regular package (has __init__.py and an importable name);
    the first folder that is not one is the sys.path entry.
    """
    parts: list[str] = []
    folder = Path(folder)
    while (folder / "__init__.py").is_file() and folder.name.isidentifier() and folder.parent != folder:
        parts.append(folder.name)
        folder = folder.parent
    return parts, folder


def module_location(path: Path) -> tuple[str, Path] | None:
    """(dotted module name, sys.path entry) for an extension file, or None if its name is not importable."""
    path = Path(path)
    match = _EXT_RE.match(path.name)
    if not match:
        return None
    packages, root = enclosing_packages(path.parent)
    return ".".join(reversed([match.group("name"), *packages])), root


def abi_matches(path: Path, soabi: str) -> bool:
    """Can an interpreter with this SOABI (sysconfig's, e.g. cpython-311-x86_64-linux-gnu) import the file?"""
    tag = extension_tag(path)
    return tag is None or tag == "abi3" or tag == soabi


_ABI3_WHEEL_TAG = re.compile(r"cp(\d)(\d+)-abi3-")


def abi3_floor(path: Path) -> tuple[int, int] | None:
    """The oldest CPython an abi3 extension is for: the cpXY of its wheel's ``cpXY-abi3-*`` tag,
    read from the .dist-info (beside its sys.path entry) whose RECORD lists the file; None when
    no installed metadata says (the file name carries no floor)."""
    location = module_location(path)
    if location is None:
        return None
    root = location[1]
    try:
        relative = Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None
    for info in sorted(root.glob("*.dist-info")):
        try:
            listed = any(line.split(",", 1)[0] == relative for line in (info / "RECORD").read_text().splitlines())
            wheel = (info / "WHEEL").read_text() if listed else ""
        except OSError:
            continue
        floors = [(int(m.group(1)), int(m.group(2))) for line in wheel.splitlines() if line.startswith("Tag:")
                  if (m := _ABI3_WHEEL_TAG.match(line.partition(":")[2].strip()))]
        if floors:
            return min(floors)
    return None
