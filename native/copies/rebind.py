"""Rewrite symbol bindings in place: the one place that turns ``STB_GNU_UNIQUE`` into ``STB_WEAK``.

Why weak: glibc keeps one table of ``STB_GNU_UNIQUE`` objects per namespace and hands every
later definition the first one's address (and pins its object NODELETE), so two copies of one
extension would share the statics the copy exists to separate. ``STB_WEAK`` is what
``g++ -fno-gnu-unique`` emits for the same inline/template statics. The copies runtime's
templates (``templates.py``) weaken every unique symbol; ``interpkit patch``
(``interpkit.shims.relink``) weakens the ones its plan names and hides clashing exports, through
``rebind_symbols`` here.

Only ``st_info``/``st_other`` bytes of ``.dynsym`` and ``.symtab`` change: nothing in the file
moves, so no other table goes out of step. Standard library only (native/ sits below the
analyzer's ELF reader).
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

SHT_SYMTAB = 2
SHT_DYNSYM = 11
SHN_UNDEF = 0
STB_WEAK = 2
STB_GNU_UNIQUE = 10

# (name, st_info, st_other) -> the new (st_info, st_other), or None to leave the symbol alone.
Rebinding = Callable[[str, int, int], "tuple[int, int] | None"]


def _layout(data: bytes) -> tuple[str, bool]:
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise ValueError("not an ELF file")
    return ("<" if data[5] == 1 else ">"), data[4] == 2


def rebind_symbols(path: str | Path, rebind: Rebinding) -> list[str]:
    """Apply ``rebind`` to every defined symbol of both symbol tables of ``path``, in place.

    Returns the names whose bytes changed (sorted, each once). Undefined symbols are
    references to someone else's definition and are never offered.
    """
    path = Path(path)
    data = path.read_bytes()
    endian, is64 = _layout(data)
    if is64:
        shoff, = struct.unpack_from(endian + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(endian + "HH", data, 0x3A)
        section = struct.Struct(endian + "IIQQQQIIQQ")    # name type flags addr offset size link info align entsize
        symbol = struct.Struct(endian + "IBBHQQ")         # name info other shndx value size
        fields = (0, 1, 2, 3)                             # name, info, other, shndx in the tuple
        info_at = 4
    else:
        shoff, = struct.unpack_from(endian + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(endian + "HH", data, 0x2E)
        section = struct.Struct(endian + "IIIIIIIIII")
        symbol = struct.Struct(endian + "IIIBBH")          # name value size info other shndx
        fields = (0, 3, 4, 5)
        info_at = 12
    headers = [section.unpack_from(data, shoff + k * shentsize) for k in range(shnum)] if shoff else []
    patches: dict[int, bytes] = {}
    changed: set[str] = set()
    for header in headers:
        kind, offset, size, link, entsize = header[1], header[4], header[5], header[6], header[9]
        if kind not in (SHT_SYMTAB, SHT_DYNSYM) or not entsize or not 0 < link < len(headers):
            continue
        strings = headers[link]
        strings_at, strings_end = strings[4], strings[4] + strings[5]
        for row in range(size // entsize):
            at = offset + row * entsize
            entry = symbol.unpack_from(data, at)
            name_offset, info, other, shndx = (entry[i] for i in fields)
            if shndx == SHN_UNDEF:
                continue
            start = strings_at + name_offset
            name = data[start:data.find(b"\0", start, strings_end)].decode("utf-8", "replace")
            new = rebind(name, info, other)
            if new is not None and new != (info, other):
                patches[at + info_at] = bytes(new)
                changed.add(name)
    if patches:
        with open(path, "r+b") as fh:
            for at, raw in patches.items():
                fh.seek(at)
                fh.write(raw)
    return sorted(changed)


def unique_to_weak(name: str, info: int, other: int) -> tuple[int, int] | None:
    """The rebinding that makes an ``STB_GNU_UNIQUE`` symbol ``STB_WEAK`` (type and visibility kept)."""
    return ((STB_WEAK << 4) | (info & 0xF), other) if info >> 4 == STB_GNU_UNIQUE else None


def weaken_unique(path: str | Path) -> list[str]:
    """Every ``STB_GNU_UNIQUE`` symbol of ``path`` becomes ``STB_WEAK``; the names changed."""
    return rebind_symbols(path, unique_to_weak)
