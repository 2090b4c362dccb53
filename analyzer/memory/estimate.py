"""Static memory estimate: per backend, the bytes each interpreter keeps private and the bytes all share.

Reads only ELF program headers (through interpkit.analyzer.elf.image); never loads or runs anything.

What is private to one interpreter depends on how the backend loads the files:

- ``namespaces``: every interpreter dlmopens its own copy of libpython, of each extension and
  of their whole DT_NEEDED closure (libc included), so every writable PT_LOAD segment
  (.data, .data.rel.ro and .got once relocated, .bss) is paid once per interpreter, plus
  the TLS block of the interpreter's thread. Read-only segments (text, rodata) are file
  pages in the page cache and are shared however many namespaces map them. The dynamic
  loader itself is the one object all namespaces share.
- ``subinterpreters``: one copy of everything; an interpreter costs only heap, which no ELF
  file can tell, plus the TLS block of its thread.
- ``copies``: libpython and the project's own files are renamed copies per interpreter; a
  copied file is a different inode, so its text is not shared in the page cache either.
  System libraries (libc, libstdc++, ...) are loaded once.
- ``processes`` (the comparison): like ``namespaces``, and the dynamic loader's data too.
- ``threads`` (the comparison): one interpreter, N threads: TLS only.
- ``forked``, ``forked-frozen`` (the comparison): N processes forked after their parent loaded
  the workload (with ``gc.freeze()`` before the fork): the parent's pages, relocated files
  included, stay shared copy-on-write; a child pays only what it writes, which no file tells.

Sizes are rounded to pages the way the loader maps them: a segment occupies every page from
the one holding its first byte to the one holding its last; the part of a writable segment
past its file size is zero-filled anonymous memory (.bss).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from interpkit.analyzer.elf.image import PT_LOAD, ElfImage, is_elf
from interpkit.core.errors import FileFormatError, InputError

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PF_W = 0x2

BACKENDS = ("namespaces", "subinterpreters", "copies", "processes", "threads", "forked", "forked-frozen")
#: Processes forked after their parent loaded everything: every page stays shared until written.
FORKED_BACKENDS = ("forked", "forked-frozen")

# Libraries under these folders come with the system: `copies` leaves them in the base namespace.
_SYSTEM_PREFIXES = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/local/lib/")
_LOADER_NAME = re.compile(r"^ld-linux.*\.so|^ld64\.so|^ld\.so")


class Role(enum.Enum):
    LIBPYTHON = "libpython"
    EXTENSION = "extension"
    LIBRARY = "library"
    LOADER = "loader"


@dataclass(frozen=True, slots=True)
class ObjectFootprint:
    """One ELF file's load footprint, in bytes, page-rounded."""

    path: Path
    role: Role
    data_bytes: int   # file-backed pages of writable segments: .data, .data.rel.ro, .got (dirtied by relocation)
    bss_bytes: int    # zero-filled anonymous pages past the file-backed part of writable segments
    text_bytes: int   # pages of read-only segments: text, rodata, symbol tables
    tls_bytes: int    # PT_TLS block: paid by every thread that runs code from this object
    relocated_bytes: int = 0  # of data_bytes, the pages the loader itself writes (relocation targets, zeroed tail)

    @property
    def writable_bytes(self) -> int:
        return self.data_bytes + self.bss_bytes

    @property
    def copied_per_interpreter(self) -> bool:
        """Whether the `copies` backend gives each interpreter its own copy of this file.

        libpython and the extensions always; other libraries unless they come with the system
        (libc, libstdc++, ...), which stay loaded once in the base namespace.
        """
        if self.role in (Role.LIBPYTHON, Role.EXTENSION):
            return True
        return self.role is Role.LIBRARY and not str(self.path).startswith(_SYSTEM_PREFIXES)

    def private_bytes(self, backend: str, *, low: bool = False) -> int:
        """What one more interpreter (thread, process) pays for this object under ``backend``.

        By default every writable page counts (a ceiling: the loader maps them all private);
        with ``low`` only the pages the loader itself must write (relocation targets and the
        zeroed tail page), which every copy pays before any code runs.
        """
        writable = self.relocated_bytes if low else self.writable_bytes
        if backend in FORKED_BACKENDS:
            # Relocated and zeroed in the parent before the fork; no file says what a child rewrites.
            return 0
        if backend in ("subinterpreters", "threads"):
            return self.tls_bytes
        if backend == "namespaces":
            # All namespaces share the one dynamic loader (its link maps hold them all).
            return self.tls_bytes if self.role is Role.LOADER else writable + self.tls_bytes
        if backend == "processes":
            return writable + self.tls_bytes
        if backend == "copies":
            # A copied file is another inode: its text is not shared in the page cache either.
            extra = writable + (0 if low else self.text_bytes) if self.copied_per_interpreter else 0
            return extra + self.tls_bytes
        raise ValueError(f"unknown backend {backend!r}")

    def shared_bytes(self, backend: str) -> int:
        """What is paid once however many interpreters there are."""
        everything = self.writable_bytes + self.text_bytes
        if backend in ("subinterpreters", "threads", *FORKED_BACKENDS):
            return everything
        if backend == "namespaces":
            return everything if self.role is Role.LOADER else self.text_bytes
        if backend == "processes":
            return self.text_bytes
        if backend == "copies":
            return 0 if self.copied_per_interpreter else everything
        raise ValueError(f"unknown backend {backend!r}")

    def as_dict(self) -> dict:
        return {"path": str(self.path), "role": self.role.value, "data_bytes": self.data_bytes,
                "bss_bytes": self.bss_bytes, "text_bytes": self.text_bytes, "tls_bytes": self.tls_bytes,
                "relocated_bytes": self.relocated_bytes}


@dataclass(frozen=True, slots=True)
class BackendEstimate:
    """Memory of N interpreters under one backend: shared + N × private_per_interpreter."""

    backend: str
    private_per_interpreter: int          # every writable page private: the ceiling
    shared: int
    objects: tuple[ObjectFootprint, ...]
    private_low_per_interpreter: int = 0  # only the pages relocation itself dirties: the floor

    def total(self, interpreters: int) -> int:
        return self.shared + interpreters * self.private_per_interpreter

    def as_dict(self) -> dict:
        return {"backend": self.backend, "private_per_interpreter_bytes": self.private_per_interpreter,
                "private_low_per_interpreter_bytes": self.private_low_per_interpreter,
                "shared_bytes": self.shared}


# ---------------------------------------------------------------------------- one file


def _page_floor(value: int) -> int:
    return value - value % PAGE_SIZE


def _page_ceil(value: int) -> int:
    return -(-value // PAGE_SIZE) * PAGE_SIZE


@functools.lru_cache(maxsize=512)
def _footprint_cached(path: Path, _size: int, _mtime: int) -> ObjectFootprint:
    try:
        with ElfImage.open(path) as image:
            segments = image.segments
            tls = image.tls_segment
            relocated = _relocated_pages(image)
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"cannot read {path} (not a readable ELF file: {exc})") from None
    except Exception as exc:  # pyelftools raises its own ELFError family on corrupt headers
        raise FileFormatError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
    data = bss = text = 0
    dirtied: set[int] = set()
    for ptype, _offset, vaddr, filesz, memsz, flags in segments:
        if ptype != PT_LOAD or memsz == 0:
            continue
        start, end = _page_floor(vaddr), _page_ceil(vaddr + memsz)
        if flags & PF_W:
            file_end = min(_page_ceil(vaddr + filesz), end) if filesz else start
            data += file_end - start
            bss += end - file_end
            pages = range(start // PAGE_SIZE, file_end // PAGE_SIZE)
            dirtied.update(page for page in relocated if page in pages)
            if memsz > filesz and (vaddr + filesz) % PAGE_SIZE:
                dirtied.add((vaddr + filesz) // PAGE_SIZE)  # the loader zeroes the tail of the last file page
        else:
            text += end - start
    tls_bytes = tls[1] if tls else 0
    return ObjectFootprint(path, Role.LIBRARY, data, bss, text, tls_bytes, len(dirtied) * PAGE_SIZE)


SHT_RELR = 19


def _relocated_pages(image: ElfImage) -> set[int]:
    """Page numbers (link-time address // page size) that dynamic relocations write into.

    Reads each REL/RELA/RELR table in one piece and keeps only the target offsets: a big
    C++ library has a million relocations, too many for one object each.
    """
    from interpkit.analyzer.elf.image import SHT_DYNSYM, SHT_REL, SHT_RELA

    word = 8 if image.elfclass == 64 else 4
    native = image.little_endian == (sys.byteorder == "little")
    dynsym = next((i for i, s in enumerate(image.sections) if s.type == SHT_DYNSYM), None)
    pages: set[int] = set()
    for section in image.sections:
        if section.type not in (SHT_RELA, SHT_REL, SHT_RELR) or section.size == 0:
            continue
        if section.type != SHT_RELR and section.link not in (0, dynsym):
            continue  # a static-link table (.rela.text of an object file) the loader never applies
        words = _words(image.section_bytes(section), word, native, image.endian)
        if section.type == SHT_RELR:
            pages.update(offset // PAGE_SIZE for offset in _relr_offsets(words, word))
        else:
            step = 3 if section.type == SHT_RELA else 2   # (offset, info[, addend])
            pages.update(offset // PAGE_SIZE for offset in words[::step])
    return pages


def _words(data: bytes, word: int, native: bool, endian: str):
    data = data[: len(data) - len(data) % word]
    if native:
        return memoryview(data).cast("Q" if word == 8 else "I")
    import struct

    return [value for (value,) in struct.iter_unpack(endian + ("Q" if word == 8 else "I"), data)]


def _relr_offsets(words, word: int):
    """Decode SHT_RELR: an address entry, then bitmaps of the following words that are relocated too."""
    bits = word * 8 - 1
    where = 0
    for entry in words:
        if entry & 1 == 0:
            yield entry
            where = entry + word
            continue
        bitmap, index = entry >> 1, 0
        while bitmap:
            if bitmap & 1:
                yield where + index * word
            bitmap >>= 1
            index += 1
        where += bits * word


def footprint(path: Path, role: Role = Role.LIBRARY) -> ObjectFootprint:
    """The page-rounded load footprint of one ELF file (cached by path, size and mtime)."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror})") from None
    found = _footprint_cached(path, stat.st_size, int(stat.st_mtime_ns))
    return found if found.role is role else dataclasses.replace(found, role=role)


# ---------------------------------------------------------------------------- which files


@functools.lru_cache(maxsize=8)
def libpython_of(python: str = sys.executable) -> Path:
    """The shared libpython that ``python`` runs on; InputError if it is statically linked."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        import sysconfig

        libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
        shared = sysconfig.get_config_var("Py_ENABLE_SHARED")
    else:
        code = ("import sysconfig as s;print(s.get_config_var('LIBDIR'));print(s.get_config_var('INSTSONAME'));"
                "print(s.get_config_var('Py_ENABLE_SHARED'))")
        try:
            done = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=30)
            libdir, soname, shared = done.stdout.split("\n")[:3]
        except (OSError, subprocess.TimeoutExpired, ValueError):
            raise InputError(f"cannot ask {python} where its libpython is (it did not run)") from None
        shared = shared.strip() not in ("0", "None", "")
    candidate = Path(libdir) / soname if libdir and soname else None
    if not shared or candidate is None or not candidate.is_file():
        raise InputError(f"cannot estimate {python} (libpython is not a shared library)")
    return candidate.resolve()


def _with_origin(entry: str, origin: Path) -> str:
    return entry.replace("${ORIGIN}", str(origin)).replace("$ORIGIN", str(origin))


def _split(values: list) -> tuple[str, ...]:
    return tuple(item for value in values for item in str(value).split(":") if item)


def needed_closure(roots: list[Path]) -> tuple[list[Path], list[str]]:
    """Every file reached from ``roots`` through DT_NEEDED, roots first; plus the names not found.

    Libraries are found the way ld.so searches (interpkit.analyzer.elf.closure.find_library). Unlike
    the scanner's closure this one also walks into system libraries: each namespace loads
    its own libc, and its own copy costs memory like any other.
    """
    from interpkit.analyzer.elf.closure import find_library
    from interpkit.analyzer.elf.image import DT_NEEDED, DT_RPATH, DT_RUNPATH

    seen: dict[Path, None] = {}
    missing: list[str] = []
    queue: list[tuple[Path, tuple[str, ...]]] = [(Path(r).resolve(), ()) for r in roots]
    while queue:
        path, inherited = queue.pop(0)
        if path in seen:
            continue
        seen[path] = None
        try:
            with ElfImage.open(path) as image:
                needed = image.dynamic_values(DT_NEEDED)
                rpath, runpath = _split(image.dynamic_values(DT_RPATH)), _split(image.dynamic_values(DT_RUNPATH))
                machine, elfclass = image.machine, image.elfclass
        except Exception:  # an unreadable dependency is `scan`'s finding; here it only costs nothing
            continue
        # DT_RPATH applies to the whole chain below an object that has no DT_RUNPATH (ld.so(8)).
        passed_down = inherited + (tuple(_with_origin(e, path.parent) for e in rpath) if not runpath else ())
        for name in needed:
            found = find_library(name, origin_file=path, machine=machine, elfclass=elfclass, rpath=rpath,
                                 runpath=runpath, parent_rpaths=inherited)
            if found is None:
                if name not in missing:
                    missing.append(name)
                continue
            queue.append((found.resolve(), passed_down))
    return list(seen), missing


def extension_files_of_module(name: str, python: str = sys.executable) -> list[Path]:
    """The extension modules a dotted module name stands for, found without importing it.

    A package contributes every extension file inside it that ``python`` could import; a
    pure-Python module contributes nothing (libpython alone carries it).
    """
    from interpkit.analyzer.plumbing.modules import abi_matches
    from interpkit.analyzer.source.imports import find_module_spec

    parts = name.split(".")
    if not all(p.isidentifier() for p in parts):
        raise InputError(f"cannot import {name!r} (not a dotted module name)")
    # found as `import` finds it, every sys.meta_path finder included (an editable install's)
    spec = find_module_spec(name)
    if spec is None:
        if parts[0] in sys.builtin_module_names:
            return []
        raise InputError(f"cannot find module {name} (not on sys.path of {python})")
    locations = list(spec.submodule_search_locations or [])
    origin = Path(spec.origin) if spec.origin and spec.has_location else None
    soabi = _soabi(python)
    if locations:
        found = []
        for folder in locations:
            for candidate in sorted(Path(folder).rglob("*.so")):
                # Only importable extension modules; plain libraries beside them come in through DT_NEEDED.
                if abi_matches(candidate, soabi) and re.search(r"\.(cpython-[^.]+|abi3)\.so$", candidate.name):
                    found.append(candidate.resolve())
        return found
    if origin is not None and origin.suffix == ".so":
        return [origin.resolve()]
    return []


@functools.lru_cache(maxsize=8)
def _soabi(python: str) -> str:
    if Path(python).resolve() == Path(sys.executable).resolve():
        import sysconfig

        return sysconfig.get_config_var("SOABI") or ""
    done = subprocess.run([python, "-I", "-c", "import sysconfig;print(sysconfig.get_config_var('SOABI'))"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def collect_inputs(paths: list[Path], modules: list[str], python: str = sys.executable, *,
                   follow_imports: bool = True) -> list[Path]:
    """ELF files from PATH arguments (files or folders), plus the extension modules that Python
    files among the PATHs and the --import names reach.

    With ``follow_imports`` the import statements are followed through the installed packages
    (interpkit.analyzer.source.imports: read, never executed), so ``torch`` brings in numpy's extensions
    too; without it a name stands for the extension files inside its package.
    """
    out: list[Path] = []
    sources: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            out.extend(p.resolve() for p in sorted(path.rglob("*.so")) if is_elf(p))
        elif path.is_file() and path.suffix == ".py":
            sources.append(path)
        elif path.is_file():
            if not is_elf(path):
                raise InputError(f"cannot estimate {path} (not an ELF file)")
            out.append(path.resolve())
        else:
            raise InputError(f"cannot read {path} (no such file or directory)")
    if follow_imports and (sources or modules):
        out.extend(extension_files_by_imports(sources, modules))
    else:
        for name in modules:
            out.extend(extension_files_of_module(name, python))
    return list(dict.fromkeys(out))


def extension_files_by_imports(sources: list[Path], modules: list[str]) -> list[Path]:
    """Extension modules (stdlib ones included) that the sources and module names import at import time."""
    import tempfile

    from interpkit.analyzer.config import Config
    from interpkit.analyzer.source.imports import ModuleKind, build_import_graph

    for name in modules:
        if not all(p.isidentifier() for p in name.split(".")):
            raise InputError(f"cannot import {name!r} (not a dotted module name)")
    with tempfile.TemporaryDirectory(prefix="interpkit-memory-") as folder:
        entries = [Path(s) for s in sources]
        if modules:
            entry = Path(folder) / "interpkit_memory_imports.py"
            entry.write_text("".join(f"import {name}\n" for name in modules))
            entries.append(entry)
        graph = build_import_graph(entries, Config())
    for name in modules:
        node = graph.nodes.get(name)
        if node is None or node.kind is ModuleKind.MISSING:
            raise InputError(f"cannot find module {name} (not on sys.path of {sys.executable})")
    return [Path(node.path).resolve() for node in graph.nodes.values()
            if node.kind in (ModuleKind.EXTENSION, ModuleKind.STDLIB) and node.path is not None
            and Path(node.path).suffix == ".so"]


# ---------------------------------------------------------------------------- per backend


@dataclass(frozen=True, slots=True)
class StaticEstimate:
    """The files an interpreter would load, and what they cost under each backend."""

    objects: tuple[ObjectFootprint, ...]
    missing: tuple[str, ...]      # DT_NEEDED names that could not be found (they cost nothing here)

    def backend(self, name: str) -> BackendEstimate:
        private = sum(o.private_bytes(name) for o in self.objects)
        low = sum(o.private_bytes(name, low=True) for o in self.objects)
        shared = sum(o.shared_bytes(name) for o in self.objects)
        return BackendEstimate(name, private, shared, self.objects, low)

    def as_dict(self) -> dict:
        return {"objects": [o.as_dict() for o in self.objects], "missing": list(self.missing),
                "backends": {name: self.backend(name).as_dict() for name in BACKENDS}}


def classify(path: Path, libpython: Path | None, extensions: set[Path]) -> Role:
    path = Path(path)
    if libpython is not None and path == libpython:
        return Role.LIBPYTHON
    if path in extensions:
        return Role.EXTENSION
    if _LOADER_NAME.match(path.name):
        return Role.LOADER
    return Role.LIBRARY


def estimate_files(files: list[Path], *, python: str | None = sys.executable, closure: bool = True) -> StaticEstimate:
    """Footprints of libpython (for ``python``; None leaves it out), ``files`` and their DT_NEEDED closure."""
    libpython = libpython_of(python) if python else None
    extensions = {Path(f).resolve() for f in files}
    roots = ([libpython] if libpython else []) + list(extensions)
    if closure:
        reached, missing = needed_closure(roots)
    else:
        reached, missing = roots, []
    objects = tuple(footprint(p, classify(p, libpython, extensions)) for p in reached)
    return StaticEstimate(objects, tuple(missing))


def estimate_loaded(paths: list[Path], libpython: Path | None = None) -> StaticEstimate:
    """Footprints of exactly the objects a runtime reported loaded (no closure, nothing guessed)."""
    objects = []
    for path in dict.fromkeys(Path(p).resolve() for p in paths):
        if not is_elf(path):
            continue
        role = classify(path, libpython.resolve() if libpython else None, set())
        if role is Role.LIBRARY and re.search(r"\.(cpython-[^.]+|abi3)\.so$", path.name):
            role = Role.EXTENSION
        objects.append(footprint(path, role))
    return StaticEstimate(tuple(objects), ())
