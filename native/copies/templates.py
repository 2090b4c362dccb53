"""Templates for the copies runtime: a libpython and extensions relinked once per file content.

A *template* is a relinked copy whose per-interpreter names are a fixed-width placeholder
(``.ik____`` at the end of a string in ``.dynstr``); an *instance* for interpreter k is the
template's bytes with the placeholder replaced by ``.ik%04d`` (native/guest/copies_loader.py), so
making interpreter k's copy is a byte copy, and the relinking (LIEF) happens once per content.
Templates are cached under ``~/.cache/interpkit-copies`` (``INTERPKIT_COPIES_CACHE``) by the
sha256 of the input and of the recipe; instances live in the runtime's own temp folder and go
with it.

What a template changes, and why (glibc 2.36, measured with LD_DEBUG=bindings, see
native/README.md):

- libpython: ``DT_SONAME`` -> ``<soname>.ik____``, so copy k is found by that name when an
  extension copy needs it; debug sections stripped (they are most of the file and never
  mapped).
- extension: every libpython ``DT_NEEDED`` removed and ``<libpython soname>.ik____`` added
  first, so with ``RTLD_DEEPBIND`` its lookup scope starts [itself, libpython copy k, ...];
  ``STB_GNU_UNIQUE`` -> ``STB_WEAK`` (``rebind.py``: one unique table per namespace would
  otherwise hand every copy the first copy's object, and pin it NODELETE); ``DT_SONAME`` renamed; ``DT_RUNPATH`` =
  ``$ORIGIN`` (the instance folder, where dependency copies are) then the original entries made
  absolute (the copy no longer lives next to its dependencies).
- dependencies with ``Py*`` references (a binding library such as a ``lib*_python.so``) are
  templates too, and the needing object's ``DT_NEEDED`` names their renamed copy; dependencies
  without ``Py*`` references are left alone: loaded once, shared by every interpreter.

The standard library and LIEF only (this is native/, below analyzer/ and shims/);
``interpkit.shims.private_copy`` drives the same templates for ``interpkit patch``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from interpkit.native.copies.rebind import weaken_unique

PLACEHOLDER = ".ik____"
RECIPE = "copies-template/5"     # bump when what a template contains changes
ENV_CACHE = "INTERPKIT_COPIES_CACHE"
_SYSTEM_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/local/lib/")


class CopyRefused(Exception):
    """A file cannot be relinked or copied; str() is the one-line reason."""


@dataclass(frozen=True)
class Template:
    """A relinked file whose per-interpreter names are placeholders, plus the dependency
    templates its copies need next to them."""

    path: Path
    companions: tuple[Path, ...] = ()

    def wire(self) -> str:
        return "\0".join(str(p) for p in (self.path, *self.companions))


def copy_soname_stem(soname: str) -> str:
    """The soname of libpython copies without the placeholder: short enough that
    ``stem + ".ik____"`` fits where the original soname was (renamed in place)."""
    stem = soname.split(".so")[0] or soname
    return stem[: max(1, len(soname) - len(PLACEHOLDER))]


def rename_soname_in_place(path: Path, new: str) -> None:
    """Overwrite DT_SONAME's string in .dynstr with `new` (no longer than the old one)."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        dynamic = next((s for s in elf.iter_sections() if isinstance(s, DynamicSection)), None)
        dynstr = elf.get_section_by_name(".dynstr")
        if dynamic is None or dynstr is None:
            raise CopyRefused(f"cannot copy {Path(path).name} (no dynamic section)")
        tag = next((t for t in dynamic.iter_tags() if t.entry.d_tag == "DT_SONAME"), None)
        if tag is None:
            raise CopyRefused(f"cannot copy {Path(path).name} (no DT_SONAME to rename)")
        offset = dynstr["sh_offset"] + tag.entry.d_val
        old = tag.soname
    if len(new) > len(old):
        raise CopyRefused(f"cannot rename {old} to the longer {new} in place")
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(new.encode() + b"\0" * (len(old) - len(new) + 1))


def hash_misses(path: Path) -> list[str]:
    """Defined .dynsym symbols that a lookup through the file's own hash table (.gnu.hash,
    else .hash) cannot find: what the dynamic loader would call "undefined symbol"."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        table = elf.get_section_by_name(".gnu.hash") or elf.get_section_by_name(".hash")
        dynsym = elf.get_section_by_name(".dynsym")
        if table is None or dynsym is None:
            return []
        # Local entries are skipped by the loader anyway (a patch may have hidden an export).
        return [s.name for s in dynsym.iter_symbols()
                if s.name and s["st_shndx"] != "SHN_UNDEF" and s["st_info"]["bind"] != "STB_LOCAL"
                and table.get_symbol(s.name) is None]


def cache_root() -> Path:
    root = os.environ.get(ENV_CACHE)
    return Path(root) if root else Path.home() / ".cache" / "interpkit-copies"


def _digest(path: Path, *extra: str) -> str:
    h = hashlib.sha256(RECIPE.encode())
    for item in extra:
        h.update(b"\0" + item.encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


def _lief():
    import lief

    lief.logging.disable()
    return lief


def _python_imports(binary) -> bool:
    # Undefined .dynsym entries (st_shndx == SHN_UNDEF); LIEF's imported_symbols misses some
    # (measured: none of libtorch_python.so's Py* references are in it).
    return any(s.shndx == 0 and s.name.startswith(("Py", "_Py")) for s in binary.dynamic_symbols)


def _is_libpython(name: str) -> bool:
    return name.startswith("libpython")


def _search_dirs(binary, origin: Path) -> list[str]:
    lief = _lief()
    dirs: list[str] = []
    for entry in binary.dynamic_entries:
        if entry.tag in (lief.ELF.DynamicEntry.TAG.RUNPATH, lief.ELF.DynamicEntry.TAG.RPATH):
            for item in entry.paths:
                dirs.append(item.replace("${ORIGIN}", str(origin)).replace("$ORIGIN", str(origin)))
    return dirs


class TemplateMaker:
    """Makes and caches templates; thread-safe (the runtime's host side serves requests)."""

    def __init__(self, libpython_soname: str, root: Path | None = None, *, weaken_unique: bool = True) -> None:
        self.libpython_soname = libpython_soname
        # Off only to show what the edit is for (tests): copies then share GNU_UNIQUE objects.
        self.weaken_unique = weaken_unique
        self.root = Path(root) if root else cache_root()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ libpython

    def libpython(self, source: Path) -> Template:
        source = Path(source).resolve()
        folder = self.root / _digest(source, "libpython", self.libpython_soname)
        target = folder / (self.libpython_soname + PLACEHOLDER)
        with self._lock:
            if target.is_file():
                return Template(target)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkstemp(prefix=".tpl-", dir=folder)[1])
            try:
                shutil.copyfile(source, tmp)
                # Debug sections are most of the file and never mapped; every copy would
                # carry them on disk.
                if shutil.which("objcopy"):
                    subprocess.run(["objcopy", "--strip-debug", str(tmp)], check=False,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                # In place, not through LIEF: a LIEF-rewritten libpython3.11 crashes in
                # Py_InitializeFromConfig (_PyStaticCode_InternStrings), measured.
                rename_soname_in_place(tmp, self.libpython_soname + PLACEHOLDER)
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        return Template(target)

    # ------------------------------------------------------------------ extensions

    def extension(self, source: Path) -> Template:
        """The template of an extension (or of a dependency that has Py* references)."""
        source = Path(source).resolve()
        with self._lock:
            return self._extension(source, seen=())

    def _extension(self, source: Path, seen: tuple[Path, ...]) -> Template:
        folder = self.root / _digest(source, "extension", str(source.parent), self.libpython_soname,
                                     "weak" if self.weaken_unique else "unique")
        manifest = folder / "template.json"
        if manifest.is_file():
            data = json.loads(manifest.read_text())
            return Template(folder / data["file"], tuple(Path(p) for p in data["companions"]))
        lief = _lief()
        try:
            binary = lief.ELF.parse(str(source))
        except Exception:  # noqa: BLE001 - LIEF raises several types for junk
            binary = None
        if binary is None:
            raise CopyRefused(f"cannot copy {source.name} (not an ELF file LIEF can read)")
        if not list(binary.dynamic_entries):
            raise CopyRefused(f"cannot copy {source.name} (no dynamic section to relink)")
        origin = source.parent
        search = _search_dirs(binary, origin)
        companions: list[Path] = []
        renames: dict[str, str] = {}
        for entry in binary.libraries:
            name = str(entry)
            if _is_libpython(name):
                continue
            found = next((Path(d) / name for d in search if (Path(d) / name).is_file()), None)
            if found is None or found.resolve() in seen or str(found.resolve()).startswith(_SYSTEM_DIRS):
                continue                      # system or not found: shared, as built
            dep = lief.ELF.parse(str(found))
            if dep is None or not _python_imports(dep):
                continue                      # no Py* references: one copy serves everyone
            child = self._extension(found.resolve(), seen + (source,))
            companions += [child.path, *child.companions]
            renames[name] = child.path.name
        folder.mkdir(parents=True, exist_ok=True)
        soname = binary.get(lief.ELF.DynamicEntry.TAG.SONAME)
        # A dependency is found by its (renamed) soname in the instance folder; an extension
        # keeps its file name, which is what the import system loads it by.
        file_name = (str(soname.name) + PLACEHOLDER) if seen and soname else \
            (source.name + PLACEHOLDER if seen else source.name)
        # DT_NEEDED: the original order, dependency copies renamed, libpython replaced by this
        # interpreter's copy, which goes last. With RTLD_DEEPBIND the lookup scope is [this
        # object, its DT_NEEDED breadth-first] and the copy is the only entry there that
        # defines Py*, so its place does not matter for Py*; last keeps every other lookup
        # in the order the library was built with.
        names = [renames.get(str(e), str(e)) for e in binary.libraries if not _is_libpython(str(e))]
        names.append(self.libpython_soname + PLACEHOLDER)
        for old in [str(e) for e in binary.libraries]:
            binary.remove_library(old)
        for name in reversed(names):        # add_library inserts at the front
            binary.add_library(name)
        if soname is not None:
            new_soname = str(soname.name) + PLACEHOLDER
            binary.remove(lief.ELF.DynamicEntry.TAG.SONAME)
            binary.add(lief.ELF.DynamicSharedObject(new_soname))
        # Only the folders that hold a dependency, after $ORIGIN (the instance folder): LIEF
        # grows .dynstr for every byte, and some growths leave .gnu.hash out of step with
        # .dynsym (checked below; measured on numpy 2.1.3's _multiarray_umath).
        needed_dirs = [d for d in search if any((Path(d) / n).is_file() for n in names)]
        runpath = ":".join(dict.fromkeys(["$ORIGIN", *needed_dirs]))
        binary.remove(lief.ELF.DynamicEntry.TAG.RPATH)
        binary.remove(lief.ELF.DynamicEntry.TAG.RUNPATH)
        binary.add(lief.ELF.DynamicEntryRunPath(runpath))
        tmp = Path(tempfile.mkstemp(prefix=".tpl-", dir=folder)[1])
        try:
            binary.write(str(tmp))
            weakened = len(weaken_unique(tmp)) if self.weaken_unique else 0
            unreachable = sorted(set(hash_misses(tmp)) - set(hash_misses(source)))
            if unreachable:
                raise CopyRefused(f"cannot relink {source.name} (the rewritten file's symbol hash table "
                                  f"misses {len(unreachable)} of its own symbols, e.g. {unreachable[0]})")
            os.chmod(tmp, 0o755)
            os.replace(tmp, folder / file_name)
        finally:
            tmp.unlink(missing_ok=True)
        data = {"file": file_name, "source": str(source), "companions": [str(p) for p in companions],
                "weakened": weakened, "renamed": renames}
        # Written after the file and renamed into place: a concurrent maker (another process
        # sharing the cache) sees either no template or a whole one.
        partial = manifest.with_name(f".{manifest.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(json.dumps(data, indent=1))
        os.replace(partial, manifest)
        return Template(folder / file_name, tuple(companions))
