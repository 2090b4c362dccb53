"""DT_NEEDED closure, resolved the way ld.so searches, lddtree-style.

It only reads files: nothing is executed or loaded, so a hostile or broken library cannot
run code here. Search order per dependency (ld.so(8)): DT_RPATH of the loading object and
its loaders (only when it has no DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH of the loading
object, the wheel's vendored `<dist>.libs` folders next to the package (auditwheel's layout,
which RPATH normally points at anyway), /etc/ld.so.conf directories, then the default
system directories.
"""
from __future__ import annotations

import glob
import logging
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from interpkit.analyzer.elf.image import ELF_MAGIC

log = logging.getLogger(__name__)

DEFAULT_DIRS = ("/lib64", "/usr/lib64", "/lib", "/usr/lib",
                "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")

# Libraries every manylinux policy lets a wheel take from the system (glibc, libgcc, libstdc++):
# shared by design in every backend, so they are resolved but not scanned as findings.
SYSTEM_LIBRARIES = frozenset({
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
    "libresolv.so.2", "libnsl.so.1", "libcrypt.so.1", "libanl.so.1", "libmvec.so.1",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "ld-linux.so.2",
    "libgcc_s.so.1", "libstdc++.so.6", "libatomic.so.1",
})


def is_libpython(soname: str) -> bool:
    return soname.startswith("libpython")


@dataclass(frozen=True)
class Dependency:
    soname: str
    path: Path | None        # None: the loader would not find it either
    needed_by: Path


def _expand(entry: str, origin: Path) -> str:
    for token in ("$ORIGIN", "${ORIGIN}"):
        entry = entry.replace(token, str(origin))
    for token in ("$LIB", "${LIB}"):
        entry = entry.replace(token, "lib64")
    for token in ("$PLATFORM", "${PLATFORM}"):
        entry = entry.replace(token, "x86_64")
    return entry


@cache
def ld_so_conf_dirs(conf: str = "/etc/ld.so.conf") -> tuple[str, ...]:
    """Directories named in ld.so.conf, following `include` globs (each file read once)."""
    out: list[str] = []
    seen: set[str] = set()

    def read(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("include"):
                pattern = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
                if not os.path.isabs(pattern):
                    pattern = os.path.join(os.path.dirname(path), pattern)
                for included in sorted(glob.glob(pattern)):
                    read(included)
            else:
                out.append(line)

    read(conf)
    return tuple(out)


def vendored_libs_dirs(path: Path) -> list[Path]:
    """`<dist>.libs` folders beside any parent package directory (auditwheel repair puts them there)."""
    return [d for parent in list(path.parents)[:6] for d in _libs_dirs_in(parent)]


@cache
def _libs_dirs_in(folder: Path) -> tuple[Path, ...]:
    try:
        return tuple(sorted(p for p in folder.iterdir() if p.name.endswith(".libs") and p.is_dir()))
    except OSError:
        return ()


def _compatible(candidate: Path, machine: int, elfclass: int) -> bool:
    identity = _elf_identity(str(candidate))
    return identity is not None and identity == (machine, elfclass)


def _elf_identity(candidate: str) -> tuple[int, int] | None:
    """(machine, elfclass) of a library, or None when it cannot be read; remembered per
    (path, size, mtime): closures of one scan ask about the same few system libraries
    over and over (122 checks of about 20 files for torch)."""
    try:
        stat = os.stat(candidate)
    except OSError:
        return None
    key = (candidate, stat.st_size, stat.st_mtime_ns)
    if key not in _IDENTITIES:
        _IDENTITIES[key] = elf_identity(candidate)
    return _IDENTITIES[key]


def elf_identity(candidate: str) -> tuple[int, int] | None:
    """(e_machine, 32 or 64) from the file header, None exactly where ElfImage.open would fail:
    pyelftools opens any file with the magic, a known EI_CLASS and EI_DATA and a whole ELF
    header (every header field decodes, unknown enum values pass through as numbers), and
    e_machine is then the raw number. Reading 20 bytes here instead of building an ELFFile
    (1.5 ms each) is what checking a candidate costs now; tests/elf/test_struct_reader.py
    holds the two to the same answer."""
    try:
        with open(candidate, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return None
    if head[:4] != ELF_MAGIC or len(head) < 6 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    elfclass = 32 if head[4] == 1 else 64
    if len(head) < (52 if elfclass == 32 else 64):
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big"), elfclass


_IDENTITIES: dict[tuple[str, int, int], tuple[int, int] | None] = {}


# Where a dependency was found, best first: a copy the package ships and points at
# (RPATH/RUNPATH/$ORIGIN, LD_LIBRARY_PATH, its wheel's .libs), a library another package in
# the same site-packages loads (torch's lib/), then the system's directories.
BUNDLED, PACKAGE, SYSTEM = 0, 1, 2


def find_library(soname: str, *, origin_file: Path, machine: int, elfclass: int,
                 rpath: tuple[str, ...], runpath: tuple[str, ...],
                 parent_rpaths: tuple[str, ...] = ()) -> Path | None:
    return locate_library(soname, origin_file=origin_file, machine=machine, elfclass=elfclass,
                          rpath=rpath, runpath=runpath, parent_rpaths=parent_rpaths)[0]


def locate_library(soname: str, *, origin_file: Path, machine: int, elfclass: int,
                   rpath: tuple[str, ...], runpath: tuple[str, ...],
                   parent_rpaths: tuple[str, ...] = (), running_packages: bool = True) -> tuple[Path | None, int]:
    """(path, BUNDLED/PACKAGE/SYSTEM) of the library ld.so would load for origin_file; (None, SYSTEM + 1)."""
    if "/" in soname:
        candidate = Path(soname)
        return (candidate, BUNDLED) if candidate.is_file() else (None, SYSTEM + 1)
    return _first_in(soname, search_folders(origin_file, rpath, runpath, parent_rpaths, running_packages), machine,
                     elfclass, origin_file)


def search_folders(origin_file: Path, rpath: tuple[str, ...], runpath: tuple[str, ...],
                   parent_rpaths: tuple[str, ...] = (), running_packages: bool = True) -> tuple[tuple[int, str], ...]:
    """(rank, folder) in the order locate_library tries them, each folder once: the same for
    every soname a file needs. running_packages=False: a closure of a file built for another
    CPython, whose libraries never come from the running Python's site-packages."""
    origin = origin_file.parent
    bundled: list[str] = []
    if not runpath:
        bundled += [_expand(e, origin) for e in rpath] + list(parent_rpaths)
    bundled += [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    bundled += [_expand(e, origin) for e in runpath]
    bundled += [str(d) for d in vendored_libs_dirs(origin_file)]
    system = list(ld_so_conf_dirs()) + list(DEFAULT_DIRS)
    # Then another installed package's lib/ folder, its own site-packages first. ld.so would
    # not search it, but it reuses a library of that soname already loaded by `import
    # <package>` (torch C++ extensions need libc10.so this way), so the dependency is real and
    # its hazards count. A package's libraries come from its own environment, never from the
    # Python that runs the scan.
    own = site_packages_of(origin_file)
    packages = [str(d) for d in (package_lib_dirs_in(own) if own else ())]
    packages += [str(d) for d in package_lib_dirs()] if running_packages else []
    seen: set[str] = set()
    out: list[tuple[int, str]] = []
    for rank, folders in ((BUNDLED, bundled), (SYSTEM, system), (PACKAGE, packages)):
        for folder in folders:
            if folder not in seen:
                seen.add(folder)
                out.append((rank, folder))
    return tuple(out)


def _first_in(soname: str, folders: tuple[tuple[int, str], ...], machine: int, elfclass: int, origin_file: Path,
              listings: dict | None = None) -> tuple[Path | None, int]:
    for rank, folder in folders:
        # normpath: `torch/lib/../../nvidia/cu13/lib` names the copy the way people read it
        joined = os.path.normpath(os.path.join(folder, soname))
        if listings is not None and not _listed(listings, joined, soname):
            continue
        candidate = Path(joined)
        if candidate.is_file() and _compatible(candidate, machine, elfclass):
            log.debug("%s: %s -> %s", origin_file, soname, candidate)
            return candidate, rank
    log.debug("%s: %s not found", origin_file, soname)
    return None, SYSTEM + 1


def _listed(listings: dict, joined: str, soname: str) -> bool:
    """False only when the folder's listing proves `joined` does not exist (then is_file() would
    be False too): one listdir per folder instead of one stat per (soname, folder) tried."""
    folder, base = os.path.split(joined)
    if base != soname:   # "." or ".." as a soname: let stat decide
        return True
    folder = folder or "."
    names = listings.get(folder, False)
    if names is False:
        try:
            names = frozenset(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            names = frozenset()
        except (OSError, ValueError):
            names = None   # unreadable listing (no read permission): stat each candidate
        listings[folder] = names
    return names is None or base in names


def site_packages_of(path: Path) -> Path | None:
    """The site-packages (or dist-packages) folder a file is installed under, if any."""
    for parent in Path(path).parents:
        if parent.name in ("site-packages", "dist-packages"):
            return parent
    return None


@cache
def package_lib_dirs() -> tuple[Path, ...]:
    """`<site-packages>/<pkg>/lib` and `<site-packages>/<dist>.libs` of the running Python."""
    out: list[Path] = []
    for entry in sys.path:
        folder = Path(entry)
        if folder.name in ("site-packages", "dist-packages") and folder.is_dir():
            out.extend(package_lib_dirs_in(folder))
    return tuple(out)


@cache
def package_lib_dirs_in(folder: Path) -> tuple[Path, ...]:
    """`<pkg>/lib` and `<dist>.libs` folders of one site-packages."""
    out: list[Path] = []
    try:
        # names sort as their paths do (same parent); a folder's entries are hundreds, so no
        # Path objects or stat calls for the ones that are not directories
        names = sorted(os.listdir(folder))
    except OSError:
        return ()
    base = str(folder)
    for name in names:
        child = os.path.join(base, name)
        if not os.path.isdir(child):
            continue   # neither a .libs folder nor a package with a lib/ folder
        if name.endswith(".libs"):
            out.append(folder / name)
        elif os.path.isdir(os.path.join(child, "lib")) and os.path.isfile(os.path.join(child, "__init__.py")):
            out.append(folder / name / "lib")
    return tuple(out)


def resolve_closure(root: Path, facts_of, lookups: dict | None = None) -> list[Dependency]:
    """Every DT_NEEDED reachable from root, breadth first, each soname once.

    facts_of(path) -> ElfFacts supplies needed/rpath/runpath (cached per file). ld.so loads a
    soname once per namespace and reuses it for every later object that needs it; which copy
    wins depends on who asks first. For a package that is the copy its own libraries point at
    (torch's libtorch_cuda.so finds libcudart in the nvidia-* wheels through its RPATH, and
    torchvision's _C, loaded after torch, reuses it), so a copy found through a needer's
    RPATH/RUNPATH replaces one found in the system's directories.

    lookups: where locate_library's answers are kept for a caller that resolves many closures
    over files that do not change meanwhile (one scan: torch's 12 closures ask 261 times for
    73 different lookups). The key is every argument and LD_LIBRARY_PATH, so an answer is
    only reused for the same question.
    """
    root_facts = facts_of(root)
    # a root built for another CPython (a cp314 tree scanned from 3.11) is never served by the
    # running Python's installed packages
    tag = root_facts.python_tag
    running_packages = tag is None or tag == tuple(sys.version_info[:2])
    queue: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    found: dict[str, Dependency] = {}
    ranks: dict[str, int] = {}
    while queue:
        current, inherited_rpaths = queue.pop(0)
        try:
            facts = facts_of(current)
        except Exception as exc:  # noqa: BLE001 - a broken dependency is reported by its own entry
            log.debug("cannot read %s (%s)", current, exc)
            continue
        own_rpaths = tuple(_expand(e, current.parent) for e in facts.rpath) if not facts.runpath else ()
        for soname in facts.needed:
            if ranks.get(soname, SYSTEM + 1) == BUNDLED:
                continue
            env = os.environ.get("LD_LIBRARY_PATH", "")
            key = (soname, current, root_facts.machine, root_facts.elfclass, facts.rpath, facts.runpath,
                   inherited_rpaths, env, running_packages)
            answer = lookups.get(key) if lookups is not None else None
            if answer is None and "/" not in soname:
                where = ("folders", current, facts.rpath, facts.runpath, inherited_rpaths, env, running_packages)
                folders = lookups.get(where) if lookups is not None else None
                if folders is None:
                    folders = search_folders(current, facts.rpath, facts.runpath, inherited_rpaths, running_packages)
                    if lookups is not None:
                        lookups[where] = folders
                listings = lookups.setdefault("listings", {}) if lookups is not None else None
                answer = _first_in(soname, folders, root_facts.machine, root_facts.elfclass, current, listings)
            elif answer is None:
                answer = locate_library(soname, origin_file=current, machine=root_facts.machine,
                                        elfclass=root_facts.elfclass, rpath=facts.rpath, runpath=facts.runpath,
                                        parent_rpaths=inherited_rpaths, running_packages=running_packages)
            if lookups is not None:
                lookups[key] = answer
            path, rank = answer
            if soname in found and rank >= ranks[soname]:
                continue
            found[soname] = Dependency(soname, path, current)
            ranks[soname] = rank
            if path is not None and soname not in SYSTEM_LIBRARIES and not is_libpython(soname):
                queue.append((path, inherited_rpaths + own_rpaths))
    return list(found.values())
