"""Slot tables an init function writes at run time, read back from the stores in its x86-64 code.

Some binding generators build the `PyModuleDef_Slot` array while the init function runs, so
the file holds only zeros (.bss) or nothing at all (heap): pybind11 3.x fills a function-local
static `std::array<PyModuleDef_Slot, 5>` (`init_slots()`: create, exec, multiple_interpreters
and the end marker, each value a compile-time constant after inlining), and hand-written Rust
modules (orjson) allocate the array and store each entry. In both cases the declared values
are immediate operands of plain stores in the init function, so they can be read without
running anything:

    movl  $0x3, slots+0x20(%rip)      ; sl_id  = Py_mod_multiple_interpreters
    movq  $0x0, slots+0x28(%rip)      ; value  = Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    movl  $0x3, 0x10(%rbx)            ; the same into a heap array whose address is in %rbx
    andq  $0x0, 0x18(%rbx)            ; value 0, written as `and` (shorter encoding)

Only these store forms are decoded (mov imm32 to memory, `and $0` to memory, a register
store, which marks the value as run-time, and a 16-byte SSE store of a constant or zeroed
register). A table is accepted only when its entries, read in order from offset 0, are module
slot ids up to a zero id: anything else is reported as unreadable, never guessed.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from interpkit.analyzer.elf.image import ElfImage

SHF_EXECINSTR = 0x4
_ENTRY = 16            # sizeof(PyModuleDef_Slot) and sizeof(PySlot) on 64-bit targets
_MAX_ENTRIES = 16


@dataclass(frozen=True)
class Store:
    """One store of the function: where (base register or "rip" with the absolute address) and what."""

    order: int                    # position in the code, to keep the last store to one place
    base: str                     # "rip" or a register number as text
    offset: int                   # absolute address for "rip", displacement otherwise
    size: int                     # bytes written
    value: int | None             # the immediate; None when a register (a run-time value) was stored


# REX prefix (optional), opcode, ModRM: decoded by hand below; the regex only finds candidates.
_MOV_IMM = re.compile(rb"[\x40-\x4f]?\xc7", re.S)
_AND_ZERO = re.compile(rb"[\x40-\x4f]?\x83", re.S)
_MOV_REG = re.compile(rb"[\x40-\x4f]?\x89", re.S)
_SSE_LOAD = re.compile(rb"(?:\x66|\xf3)?[\x40-\x4f]?\x0f(?:\x10|\x28|\x6f)", re.S)
_SSE_STORE = re.compile(rb"(?:\x66|\xf3)?[\x40-\x4f]?\x0f(?:\x11|\x29|\x7f)", re.S)
_SSE_ZERO = re.compile(rb"(?:\x66)?[\x40-\x4f]?\x0f(?:\x57|\xef)", re.S)   # xorps / pxor reg, reg


def _rex(code: bytes, pos: int) -> tuple[int, int]:
    """(REX byte or 0, position after it)."""
    byte = code[pos]
    return (byte, pos + 1) if 0x40 <= byte <= 0x4F else (0, pos)


def _memory_operand(code: bytes, pos: int, rex: int, start: int) -> tuple[str, int, int, int] | None:
    """Decode ModRM at pos as a memory operand: (base, displacement or address, reg field, end).
    None for register operands and SIB forms other than a plain base."""
    if pos >= len(code):
        return None
    modrm = code[pos]
    mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
    reg |= 8 if rex & 4 else 0
    pos += 1
    if mod == 3:
        return None
    if rm == 4:                                   # SIB: accept only base-without-index
        if pos >= len(code):
            return None
        sib = code[pos]
        if (sib >> 3) & 7 != 4:
            return None
        rm = sib & 7
        pos += 1
        if mod == 0 and rm == 5:
            return None
    if mod == 0 and rm == 5:                      # rip-relative; the address needs the end of the instruction
        if pos + 4 > len(code):
            return None
        return "rip", struct.unpack_from("<i", code, pos)[0], reg, pos + 4
    base = str(rm | (8 if rex & 1 else 0))
    if mod == 0:
        return base, 0, reg, pos
    if mod == 1:
        if pos + 1 > len(code):
            return None
        return base, struct.unpack_from("<b", code, pos)[0], reg, pos + 1
    if pos + 4 > len(code):
        return None
    return base, struct.unpack_from("<i", code, pos)[0], reg, pos + 4


def read_stores(image: ElfImage, start: int, code: bytes) -> list[Store]:
    """The immediate, zero and register stores to memory in code (loaded at start)."""
    stores: list[Store] = []

    def place(base: str, disp: int, end_of_insn: int) -> int:
        return start + end_of_insn + disp if base == "rip" else disp

    for match in _MOV_IMM.finditer(code):
        rex, at = _rex(code, match.start())
        operand = _memory_operand(code, at + 1, rex, start)
        if operand is None or operand[2] & 7 != 0:
            continue
        base, disp, _reg, end = operand
        if end + 4 > len(code):
            continue
        imm = struct.unpack_from("<i", code, end)[0]
        size = 8 if rex & 8 else 4
        stores.append(Store(match.start(), base, place(base, disp, end + 4), size,
                            imm & (0xFFFFFFFFFFFFFFFF if size == 8 else 0xFFFFFFFF)))
    for match in _AND_ZERO.finditer(code):
        rex, at = _rex(code, match.start())
        operand = _memory_operand(code, at + 1, rex, start)
        if operand is None or operand[2] & 7 != 4:
            continue
        base, disp, _reg, end = operand
        if end + 1 > len(code) or code[end] != 0:
            continue
        stores.append(Store(match.start(), base, place(base, disp, end + 1), 8 if rex & 8 else 4, 0))
    for match in _MOV_REG.finditer(code):
        rex, at = _rex(code, match.start())
        operand = _memory_operand(code, at + 1, rex, start)
        if operand is None:
            continue
        base, disp, _reg, end = operand
        stores.append(Store(match.start(), base, place(base, disp, end), 8 if rex & 8 else 4, None))
    stores.extend(_sse_stores(image, start, code))
    stores.sort(key=lambda s: s.order)
    return _follow_register_copies(code, stores)


_CALL = re.compile(rb"\xe8", re.S)


def _follow_register_copies(code: bytes, stores: list[Store]) -> list[Store]:
    """Name each base register by the pointer it holds, so stores through %rax and then through
    %rbx after `mov %rax,%rbx` land in one table; a `call` gives %rax a new pointer (its result)."""
    events: list[tuple[int, int, int]] = []      # (order, dst, src); src -1: a new pointer
    for match in _MOV_REG.finditer(code):
        rex, at = _rex(code, match.start())
        if not rex & 8 or at + 1 >= len(code) or code[at + 1] >> 6 != 3:
            continue
        modrm = code[at + 1]
        src = ((modrm >> 3) & 7) | (8 if rex & 4 else 0)
        dst = (modrm & 7) | (8 if rex & 1 else 0)
        events.append((match.start(), dst, src))
    events.extend((m.start(), 0, -1) for m in _CALL.finditer(code))
    events.sort()
    names = {reg: f"{reg}" for reg in range(16)}
    out: list[Store] = []
    position = 0
    for store in stores:
        while position < len(events) and events[position][0] < store.order:
            order, dst, src = events[position]
            names[dst] = f"{dst}@{order}" if src < 0 else names[src]
            position += 1
        out.append(store if store.base == "rip" else
                   Store(store.order, names[int(store.base)], store.offset, store.size, store.value))
    return out


def _sse_stores(image: ElfImage, start: int, code: bytes) -> list[Store]:
    """16-byte stores of an xmm register whose content is known: loaded from a constant, or zeroed."""
    events: list[tuple[int, str, int, object]] = []   # (order, kind, xmm, payload)
    for match in _SSE_LOAD.finditer(code):
        at = match.start() + (1 if code[match.start()] in (0x66, 0xF3) else 0)
        rex, at = _rex(code, at)
        operand = _memory_operand(code, at + 2, rex, start)
        if operand is None or operand[0] != "rip":
            continue
        _base, disp, reg, end = operand
        events.append((match.start(), "load", reg, image.read(start + end + disp, 16)))
    for match in _SSE_ZERO.finditer(code):
        at = match.start() + (1 if code[match.start()] == 0x66 else 0)
        rex, at = _rex(code, at)
        if at + 2 >= len(code):
            continue
        modrm = code[at + 2]
        if modrm >> 6 == 3 and (modrm >> 3) & 7 == modrm & 7:
            events.append((match.start(), "load", ((modrm >> 3) & 7) | (8 if rex & 4 else 0), bytes(16)))
    for match in _SSE_STORE.finditer(code):
        at = match.start() + (1 if code[match.start()] in (0x66, 0xF3) else 0)
        rex, at = _rex(code, at)
        operand = _memory_operand(code, at + 2, rex, start)
        if operand is not None:
            events.append((match.start(), "store", operand[2], operand))
    known: dict[int, bytes | None] = {}
    out: list[Store] = []
    for order, kind, xmm, payload in sorted(events, key=lambda e: e[0]):
        if kind == "load":
            known[xmm] = payload if isinstance(payload, bytes) else None
            continue
        base, disp, _reg, end = payload
        data = known.get(xmm)
        address = start + end + disp if base == "rip" else disp
        if data is None:
            out.append(Store(order, base, address, 16, None))
            continue
        out.append(Store(order, base, address, 8, struct.unpack_from("<Q", data, 0)[0]))
        out.append(Store(order, base, address + 8, 8, struct.unpack_from("<Q", data, 8)[0]))
    return out


def _table(cells: dict[int, Store], origin: int, decode_id) -> tuple[tuple[int, int | None], ...] | None:
    """Entries read from cells (address -> last store there) starting at origin, up to a zero id.
    decode_id: the raw first 32-bit word of an entry -> its module slot id, 0 for the end, None
    for a word that is no module slot (then the table is not accepted)."""
    entries: list[tuple[int, int | None]] = []
    for index in range(_MAX_ENTRIES):
        id_store = cells.get(origin + index * _ENTRY)
        if id_store is None or id_store.value is None:
            return None
        slot_id = decode_id(id_store.value & 0xFFFFFFFF)
        if slot_id == 0:
            return tuple(entries)
        if slot_id is None:
            return None
        value_store = cells.get(origin + index * _ENTRY + 8)
        entries.append((slot_id, None if value_store is None else value_store.value))
    return None


def _cells(stores: list[Store]) -> dict[str, dict[int, Store]]:
    by_base: dict[str, dict[int, Store]] = {}
    for store in stores:
        by_base.setdefault(store.base, {})[store.offset] = store   # the last store to a place wins
    return by_base


def slots_written_at(stores: list[Store], address: int, decode_id) -> tuple | None:
    """The table the code writes at a known static address (a .bss array), or None."""
    return _table(_cells(stores).get("rip", {}), address, decode_id)


def slots_written_anywhere(stores: list[Store], decode_id, declaring: frozenset[int]) -> tuple | None:
    """The one table the code writes through a base register (a heap array), when exactly one
    register receives a well-formed table that holds one of the `declaring` slots."""
    found = []
    for base, cells in _cells(stores).items():
        if base == "rip":
            continue
        table = _table(cells, 0, decode_id)
        if table and any(slot in declaring and value is not None for slot, value in table):
            found.append(table)
    return found[0] if len(found) == 1 else None


def referenced_by_code(image: ElfImage, address: int, size: int, chunk: int = 1 << 22) -> bool | None:
    """Whether any rip-relative operand in the executable sections can reach [address, address+size):
    every 4-byte window is taken as a disp32 ending 0-5 bytes before the next instruction (an
    immediate may follow it), so this over-approximates. Read in chunks (bounded memory on a
    large .text). None when it cannot be checked."""
    try:
        import numpy as np
    except ImportError:   # pragma: no cover - numpy is a dependency of the scan
        return None
    for section in image.sections:
        if not section.flags & SHF_EXECINSTR or section.size < 4:
            continue
        data = image.section_bytes(section)
        for begin in range(0, len(data), chunk):
            piece = bytes(data[begin:begin + chunk + 3])      # 3 more: the last windows of the chunk
            code = np.frombuffer(piece, dtype=np.uint8).astype(np.int64)
            if code.size < 4:
                continue
            disp = code[:-3] | (code[1:-2] << 8) | (code[2:-1] << 16) | (code[3:] << 24)
            disp = np.where(disp >= 1 << 31, disp - (1 << 32), disp)
            end_of_disp = section.addr + begin + np.arange(disp.size, dtype=np.int64) + 4
            for tail in range(6):                       # imm8/imm32 after the displacement, or none
                target = end_of_disp + tail + disp
                if np.any((target >= address) & (target < address + size)):
                    return True
    return False
