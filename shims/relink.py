"""Relink: rewrite an ELF file's symbol bindings and dynamic tags so it loads per interpreter.

Two kinds of change, done two ways on purpose:

- **Symbol bindings** (``STB_GNU_UNIQUE`` -> ``STB_WEAK``; clashing export -> local + hidden)
  are one-byte patches of ``st_info`` / ``st_other`` in ``.dynsym`` and ``.symtab``. Nothing
  moves: no section grows, no address changes, and a second patch finds nothing to do, so
  patching twice is byte-identical. A binary rewriter (LIEF, patchelf) would rebuild the
  dynamic segment for a change that is one nibble wide. Why the result loads as intended
  (glibc 2.36): ``do_lookup_x`` skips ``STB_LOCAL`` entries ("Local symbols are ignored"), so
  no other object can bind to a hidden export; the object's own relocations against it go
  through ``RESOLVE_MAP``, which binds local or non-default-visibility symbols to the object
  itself, and lazy PLT fix-ups (``_dl_fixup``) do the same for non-default visibility.
  ``STB_WEAK`` is exactly what ``g++ -fno-gnu-unique`` emits for inline/template statics; a
  weak definition is looked up like a global one, so an object loaded ``RTLD_LOCAL`` keeps
  its own copy instead of joining the namespace-wide unique table (which also makes the
  object ``NODELETE``). The ``.dynsym`` rule that locals come first (``sh_info``) is a static
  linker convention that ld.so never reads.
- **Dynamic tags** (``DT_NEEDED`` on libpython, ``DT_RUNPATH``, ``DT_SONAME``) change string
  table contents and may need room, so they go through LIEF, a maintained ELF rewriter that
  is already a dependency. LIEF runs only when a tag really changes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from interpkit.analyzer.elf.image import SHT_DYNSYM, ElfImage
from interpkit.analyzer.elf.symbols import (SHN_UNDEF, STB_GNU_UNIQUE, STB_LOCAL, STV_DEFAULT, STV_HIDDEN, STV_PROTECTED,
                                            read_symbol_table)
from interpkit.native.copies.rebind import rebind_symbols, unique_to_weak
from interpkit.shims.plan import Edit, EditKind

log = logging.getLogger(__name__)

_LIBPYTHON_PREFIX = "libpython"


# --------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class ElfState:
    """What relinking can change, read straight from the file (before and after a patch)."""

    gnu_unique: tuple[str, ...]
    exports: tuple[str, ...]          # defined, non-local, default/protected, in .dynsym
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    soname: str | None

    @property
    def libpython(self) -> list[str]:
        return [n for n in self.needed if n.startswith(_LIBPYTHON_PREFIX)]

    def to_json(self) -> dict:
        return {"gnu_unique": list(self.gnu_unique), "exports": len(self.exports), "needed": list(self.needed),
                "rpath": list(self.rpath), "runpath": list(self.runpath), "soname": self.soname}


def read_state(path: Path) -> ElfState:
    from interpkit.analyzer.elf.image import DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME

    with ElfImage.open(Path(path)) as image:
        table = read_symbol_table(image, SHT_DYNSYM)
        unique, exports = set(), set()
        for index, (_value, _size, info, other, shndx) in enumerate(table.rows):
            bind, visibility = info >> 4, other & 0x3
            if shndx == SHN_UNDEF or bind == STB_LOCAL:
                continue
            name = table.names[index]
            if bind == STB_GNU_UNIQUE:
                unique.add(name)
            if visibility in (STV_DEFAULT, STV_PROTECTED):
                exports.add(name)
        split = lambda values: tuple(p for v in values for p in str(v).split(":") if p)  # noqa: E731
        return ElfState(gnu_unique=tuple(sorted(unique)), exports=tuple(sorted(exports)),
                        needed=tuple(image.dynamic_values(DT_NEEDED)),
                        rpath=split(image.dynamic_values(DT_RPATH)), runpath=split(image.dynamic_values(DT_RUNPATH)),
                        soname=next(iter(image.dynamic_values(DT_SONAME)), None))


# --------------------------------------------------------------------------- planning

def plan_unique(path: Path, state: ElfState, symbol: str | None, code: str) -> list[Edit]:
    """STB_GNU_UNIQUE -> STB_WEAK for `symbol`, or for every unique symbol when none is named."""
    names = [symbol] if symbol and symbol in state.gnu_unique else list(state.gnu_unique)
    return [Edit(EditKind.UNIQUE_TO_WEAK, name, code=code) for name in names]


def plan_hide(path: Path, state: ElfState, symbol: str | None, code: str) -> tuple[list[Edit], str | None]:
    """Hide a clashing export of an extension; (edits, reason it cannot be done)."""
    if symbol and symbol.startswith("PyInit_"):
        return [], f"{symbol} is the module's entry point and must stay exported"
    if not any(name.startswith("PyInit_") for name in state.exports):
        return [], "a shared library's exports are its interface (rebuild it with -fvisibility=hidden instead)"
    names = [symbol] if symbol else [n for n in state.exports if not n.startswith("PyInit_")]
    return [Edit(EditKind.HIDE_SYMBOL, name, code=code) for name in names if name in state.exports], None


def plan_runpath(path: Path, state: ElfState, code: str, search_dirs: tuple[Path, ...] = ()) -> tuple[list[Edit], str | None]:
    """A DT_RUNPATH under which every DT_NEEDED resolves: $ORIGIN-relative folders for the
    dependencies found in `search_dirs` (a wheel's `.libs`, the tree), existing entries that
    still hold a dependency, nothing else. (edits, reason when a dependency cannot be found)."""
    from interpkit.analyzer.elf.closure import SYSTEM_LIBRARIES, find_library, is_libpython

    path = Path(path)
    with ElfImage.open(path) as image:
        machine, elfclass = image.machine, image.elfclass
    origin = path.parent
    keep: list[str] = []
    missing: list[str] = []
    for soname in state.needed:
        if soname in SYSTEM_LIBRARIES or is_libpython(soname):
            continue
        entry = None
        for folder in search_dirs:
            if (Path(folder) / soname).is_file():
                entry = "$ORIGIN" if Path(folder).resolve() == origin.resolve() else \
                    "$ORIGIN/" + os.path.relpath(Path(folder).resolve(), origin.resolve())
                break
        if entry is None:
            for existing in state.runpath or state.rpath:
                expanded = existing.replace("${ORIGIN}", str(origin)).replace("$ORIGIN", str(origin))
                if (Path(expanded) / soname).is_file():
                    entry = existing
                    break
        if entry is None:
            found = find_library(soname, origin_file=path, machine=machine, elfclass=elfclass, rpath=(), runpath=())
            if found is None:
                missing.append(soname)
            continue  # found on the system search path: needs no entry
        if entry not in keep:
            keep.append(entry)
    new = ":".join(keep)
    old = ":".join(state.runpath or state.rpath)
    edits = [] if (new == old and not state.rpath) or (not new and not old) else \
        [Edit(EditKind.SET_RUNPATH, "DT_RUNPATH", value=new, old=old, code=code)]
    reason = f"{', '.join(missing)} not found in the tree or on the system" if missing else None
    return edits, reason


# --------------------------------------------------------------------------- applying

def apply_binary_edits(path: Path, edits: list[Edit]) -> list[str]:
    """Apply the binary edits to `path` in place (callers pass a private temp copy).

    Returns one line per change actually made; an edit whose state is already reached
    changes nothing and says nothing.
    """
    path = Path(path)
    done: list[str] = []
    symbol_edits = {e.target: e.kind for e in edits if e.kind in (EditKind.UNIQUE_TO_WEAK, EditKind.HIDE_SYMBOL)}
    if symbol_edits:
        done += _patch_symbol_bytes(path, symbol_edits)
    tag_edits = [e for e in edits if e.kind in (EditKind.SET_LIBPYTHON, EditKind.SET_RUNPATH, EditKind.SET_SONAME)]
    if tag_edits:
        done += _patch_dynamic_tags(path, tag_edits)
    return done


def _patch_symbol_bytes(path: Path, wanted: dict[str, EditKind]) -> list[str]:
    """Rewrite st_info/st_other bytes in both symbol tables (native's rebind_symbols, the one
    byte patcher the copies runtime's templates use too); nothing else in the file moves."""
    def rebind(name: str, info: int, other: int) -> tuple[int, int] | None:
        kind = wanted.get(name)
        if kind is EditKind.UNIQUE_TO_WEAK:
            return unique_to_weak(name, info, other)
        if kind is EditKind.HIDE_SYMBOL and (info >> 4 != STB_LOCAL or other & 0x3 != STV_HIDDEN):
            return (STB_LOCAL << 4) | (info & 0xF), (other & ~0x3) | STV_HIDDEN
        return None

    return [f"{name}: {'STB_GNU_UNIQUE -> STB_WEAK' if wanted[name] is EditKind.UNIQUE_TO_WEAK else 'exported -> local, hidden'}"
            for name in rebind_symbols(path, rebind)]


def _patch_dynamic_tags(path: Path, edits: list[Edit]) -> list[str]:
    import lief

    state = read_state(path)
    todo: list[Edit] = []
    for edit in edits:
        if edit.kind is EditKind.SET_LIBPYTHON and state.libpython != [edit.value]:
            todo.append(edit)
        elif edit.kind is EditKind.SET_RUNPATH and (":".join(state.runpath) != edit.value or state.rpath):
            todo.append(edit)
        elif edit.kind is EditKind.SET_SONAME and state.soname != edit.value:
            todo.append(edit)
    if not todo:
        return []
    binary = lief.ELF.parse(str(path))
    if binary is None:
        raise ValueError(f"cannot relink {path} (LIEF cannot parse it)")
    done: list[str] = []
    for edit in todo:
        if edit.kind is EditKind.SET_LIBPYTHON:
            for old in state.libpython:
                binary.remove_library(old)
            # First in DT_NEEDED: Py* references then find this copy before anything it pulls in.
            binary.add_library(edit.value)
            done.append(f"DT_NEEDED libpython: {','.join(state.libpython) or '(none)'} -> {edit.value}")
        elif edit.kind is EditKind.SET_RUNPATH:
            binary.remove(lief.ELF.DynamicEntry.TAG.RPATH)
            binary.remove(lief.ELF.DynamicEntry.TAG.RUNPATH)
            if edit.value:
                binary.add(lief.ELF.DynamicEntryRunPath(edit.value.split(":")))
            done.append(f"DT_RUNPATH: {':'.join(state.runpath or state.rpath) or '(none)'} -> {edit.value or '(none)'}")
        elif edit.kind is EditKind.SET_SONAME:
            binary.remove(lief.ELF.DynamicEntry.TAG.SONAME)
            binary.add(lief.ELF.DynamicSharedObject(edit.value))
            done.append(f"DT_SONAME: {state.soname or '(none)'} -> {edit.value}")
    tmp = path.with_name(path.name + ".lief")
    binary.write(str(tmp))
    # LIEF can leave .gnu.hash out of step with .dynsym when .dynstr grows (measured on numpy
    # 2.1.3's _multiarray_umath: "undefined symbol" for its own functions); never ship that.
    from interpkit.native.copies.templates import hash_misses

    broken = sorted(set(hash_misses(tmp)) - set(hash_misses(path)))
    if broken:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot relink {path.name} (the rewrite's symbol hash table misses {len(broken)} "
                         f"of its own symbols, e.g. {broken[0]})")
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)
    return done
