"""PyInit_* → PyModuleDef_Init(&def) → def.m_slots through relocations → the declared slot values.

Nothing is executed. For each PyInit_ function we decode just enough x86-64 to see which
PyModuleDef it takes the address of (`lea reg, [rip+disp32]`) and which imported functions
it calls through the PLT/GOT; elsewhere (other architectures, PyInit_ that only calls a
helper) we fall back to the one PyModuleDef-shaped object in writable data, and say so.
"""
from __future__ import annotations

import enum
import re
import struct
from bisect import bisect_right
from dataclasses import dataclass, field, replace

from interpkit.analyzer.elf.image import EM_X86_64, ElfImage
from interpkit.analyzer.elf.slot_stores import read_stores, referenced_by_code, slots_written_anywhere, slots_written_at
from interpkit.analyzer.elf.symbols import STT_FUNC, Symbols

# Include/moduleobject.h (3.12: slots 1-3; 3.13: 1-4). Checked against the 3.12.1 and 3.13.0 headers.
Py_mod_create, Py_mod_exec, Py_mod_multiple_interpreters, Py_mod_gil = 1, 2, 3, 4
MULTIPLE_INTERPRETERS_VALUES = {0: "not-supported", 1: "supported", 2: "per-interpreter-gil-supported"}
GIL_VALUES = {0: "used", 1: "not-used"}
# 3.15 (PEP 820, Include/slots_generated.h) numbers every slot once: a build against the 3.15
# headers writes 84-87 for the four module slots above (the limited API before 3.15 keeps 1-4,
# and 3.15 accepts both), and adds module slots 92-110. Checked against the 3.15.2 headers;
# docs/facts.md lists them.
PEP820_RENUMBERED = {84: Py_mod_create, 85: Py_mod_exec, 86: Py_mod_multiple_interpreters, 87: Py_mod_gil}
Py_slot_subslots, Py_mod_slots = 92, 94
SLOT_NAMES = {1: "Py_mod_create", 2: "Py_mod_exec", 3: "Py_mod_multiple_interpreters", 4: "Py_mod_gil",
              92: "Py_slot_subslots", 94: "Py_mod_slots", 100: "Py_mod_name", 101: "Py_mod_doc",
              102: "Py_mod_state_size", 103: "Py_mod_methods", 104: "Py_mod_state_traverse",
              105: "Py_mod_state_clear", 106: "Py_mod_state_free", 109: "Py_mod_abi", 110: "Py_mod_token"}
MODEXPORT_PREFIX = "PyModExport_"   # PEP 793 (3.15): returns a PySlot array instead of a module or def


def module_slot_id(raw: int) -> int | None:
    """A PyModuleDef_Slot `int slot` as the module slot it names (3.15 numbers folded onto 1-4),
    0 for the end marker, None for a number that is no module slot."""
    raw = raw - (1 << 32) if raw >= 1 << 31 else raw
    if raw == 0:
        return 0
    raw = PEP820_RENUMBERED.get(raw, raw)
    return raw if raw in SLOT_NAMES else None


def pyslot_id(raw: int) -> int | None:
    """The first word of a PEP 820 `PySlot` (uint16 sl_id, uint16 sl_flags) as a module slot id."""
    return module_slot_id(raw & 0xFFFF)


SINGLE_PHASE_CREATORS = ("PyModule_Create2", "PyModule_Create", "_PyModule_CreateInitialized")
MULTI_PHASE_INIT = "PyModuleDef_Init"
MODULEDEF_TYPE = "PyModuleDef_Type"

_MAX_SLOTS = 64  # a real slot table has a handful; stop reading garbage long before this


class InitKind(enum.StrEnum):
    SINGLE_PHASE = "single-phase"
    MULTI_PHASE = "multi-phase"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Slots:
    """The slot table as read from the file; None values mean "not file-backed" (filled at run time)."""

    entries: tuple[tuple[int, int | None], ...] = ()
    readable: bool = True
    reason: str | None = None  # why it is unreadable
    address: int | None = None  # where the table lives, when it is in the file's address space
    how: str | None = None      # where the entries were read from, when not from the file's data

    def value(self, slot_id: int) -> int | None:
        return next((v for s, v in self.entries if s == slot_id), None)

    def has(self, slot_id: int) -> bool:
        return any(s == slot_id for s, _ in self.entries)


@dataclass(frozen=True)
class ModuleInit:
    symbol: str                  # PyInit_foo
    module: str                  # foo
    kind: InitKind
    proved: bool                 # kind read from the code/data itself, not guessed from imports
    how: str                     # one phrase: how the kind was decided
    def_address: int | None = None
    m_size: int | None = None
    slots: Slots | None = None   # multi-phase only
    calls: tuple[str, ...] = ()  # imported functions the init function calls or jumps to
    export: Slots | None = None  # the PySlot array of PyModExport_<module> (PEP 793), when exported

    @property
    def declared(self) -> Slots | None:
        """The slots the importing Python reads: PyModExport_'s array where the binary has one
        (3.15 looks for it before PyInit_, and binding generators declare the same in both)."""
        if self.export is not None and self.export.readable:
            return self.export
        return self.slots

    @property
    def multiple_interpreters(self) -> str | None:
        """Declared Py_mod_multiple_interpreters; "absent" when the table has no such slot."""
        slots = self.declared
        if slots is None or not slots.readable:
            return None
        if not slots.has(Py_mod_multiple_interpreters):
            return "absent"
        value = slots.value(Py_mod_multiple_interpreters)
        return MULTIPLE_INTERPRETERS_VALUES.get(value, f"unknown({value})") if value is not None else None

    @property
    def gil(self) -> str | None:
        slots = self.declared
        if slots is None or not slots.readable:
            return None
        if not slots.has(Py_mod_gil):
            return "absent"
        value = slots.value(Py_mod_gil)
        return GIL_VALUES.get(value, f"unknown({value})") if value is not None else None

    def to_json(self) -> dict:
        out: dict = {"symbol": self.symbol, "module": self.module, "kind": self.kind.value,
                     "proved": self.proved, "how": self.how}
        if self.m_size is not None:
            out["m_size"] = self.m_size
        slots = self.declared
        if slots is not None:
            out["slots_readable"] = slots.readable
            if slots.readable:
                out["slots"] = [[SLOT_NAMES.get(s, str(s)), v] for s, v in slots.entries]
                out["multiple_interpreters"] = self.multiple_interpreters
                out["gil"] = self.gil
                if slots.how:
                    out["slots_read_from"] = slots.how
            elif slots.reason:
                out["slots_unreadable"] = slots.reason
        if self.export is not None:
            out["export"] = MODEXPORT_PREFIX + self.module
        return out


@dataclass(frozen=True)
class InitInfo:
    """The PyInit_ functions of one file, as the file itself shows them (immutable: cached facts)."""

    inits: tuple[ModuleInit, ...] = ()
    imports_single_phase: bool = False
    imports_multi_phase: bool = False

    @property
    def kinds(self) -> set[InitKind]:
        return {i.kind for i in self.inits}


# ---------------------------------------------------------------------------- PyModuleDef layout
def _moduledef_layout(image: ElfImage) -> dict[str, int]:
    """Offsets inside struct PyModuleDef: PyModuleDef_Base is PyObject_HEAD + m_init + m_index + m_copy."""
    p = image.pointer_size
    base = 2 * p + 3 * p  # ob_refcnt, ob_type, m_init, m_index, m_copy
    return {"m_name": base, "m_doc": base + p, "m_size": base + 2 * p, "m_methods": base + 3 * p,
            "m_slots": base + 4 * p, "size": base + 8 * p}


def _looks_like_moduledef(image: ElfImage, address: int, layout: dict[str, int] | None = None) -> bool:
    """PyModuleDef_HEAD_INIT: refcount 1 (3.11) or immortal (3.12+), NULL type/init/copy, m_index 0.
    Callers have read the relocations (_plt_targets, _moduledef_candidates)."""
    layout = _moduledef_layout(image) if layout is None else layout
    p = image.pointer_size
    relocated = image.relocation_index
    if address + p in relocated or address + 2 * p in relocated or address + 4 * p in relocated:
        image.segments   # the error reading the head would give, this gives first (the answer is False either way)
        return False
    head = image.read(address, layout["m_name"])
    if head is None:
        return False
    words = struct.unpack(image.endian + ("Q" if p == 8 else "I") * 5, head)
    refcnt = words[0] & 0xFFFFFFFF if p == 8 else words[0]
    if refcnt not in (1, 0xFFFFFFFF, 0x3FFFFFFF, 0xC0000000):
        return False
    if any(words[i] for i in (1, 2, 3, 4)):
        return False
    name = image.read_ptr(address + layout["m_name"])
    return name is not None and name[0] in ("address", "symbol") and name[1] != 0


def read_slots(image: ElfImage, address: int, decode_id=module_slot_id, depth: int = 0) -> Slots:
    """The slot table at address: PyModuleDef_Slot entries (decode_id=module_slot_id) or PEP 820
    PySlot entries (pyslot_id); both are 16 bytes on 64-bit targets. Nested tables
    (Py_slot_subslots, Py_mod_slots) are read in place of the slot that points to them."""
    p = image.pointer_size
    entry = struct.Struct(image.endian + ("IiQ" if p == 8 else "Ii"))
    entries: list[tuple[int, int | None]] = []
    for index in range(_MAX_SLOTS):
        at = address + index * entry.size
        raw = image.read(at, entry.size)
        if raw is None:
            return Slots(tuple(entries), False, "slot table is all zero at load time (.bss): filled in at run time, or empty",
                         address=address)
        value_at = at + entry.size - p
        # A relocated value is a pointer (exec/create functions); the declared flags are plain integers.
        value = None if value_at in image.relocation_index else entry.unpack(raw)[-1]
        slot_id = decode_id(entry.unpack(raw)[0])
        if slot_id == 0:
            return Slots(tuple(entries), address=address)
        if slot_id is None:
            number = entry.unpack(raw)[0]
            return Slots(tuple(entries), False, f"slot id {number & 0xFFFF if decode_id is pyslot_id else number} "
                         "is not a CPython module slot", address=address)
        if slot_id in (Py_slot_subslots, Py_mod_slots) and depth < 4:
            pointer = image.read_ptr(value_at)
            if pointer is None or pointer[0] != "address" or not pointer[1]:
                return Slots(tuple(entries), False, f"{SLOT_NAMES[slot_id]} points outside the file's data", address=address)
            nested = read_slots(image, pointer[1], pyslot_id if slot_id == Py_slot_subslots else module_slot_id, depth + 1)
            if not nested.readable:
                return replace(nested, entries=tuple(entries) + nested.entries, address=address)
            entries.extend(nested.entries)
            continue
        entries.append((slot_id, value))
    return Slots(tuple(entries), False, "slot table has no terminator", address=address)


def read_moduledef(image: ElfImage, address: int) -> tuple[int | None, Slots]:
    """(m_size, slots) of the PyModuleDef at address."""
    layout = _moduledef_layout(image)
    raw_size = image.read(address + layout["m_size"], image.pointer_size)
    m_size = struct.unpack(image.endian + ("q" if image.pointer_size == 8 else "i"), raw_size)[0] if raw_size else None
    pointer = image.read_ptr(address + layout["m_slots"])
    if pointer is None:
        return m_size, Slots((), False, "m_slots is filled in at run time")
    kind, value = pointer
    if kind == "symbol":
        return m_size, Slots((), False, "m_slots points into another object")
    if value == 0:
        return m_size, Slots(())  # no slot table: CPython applies its defaults
    return m_size, read_slots(image, value)


# ---------------------------------------------------------------------------- x86-64 decoding
_LEA_RIP = re.compile(rb"[\x48\x4c]\x8d[\x05\x0d\x15\x1d\x25\x2d\x35\x3d]", re.S)
_CALL_REL = re.compile(rb"[\xe8\xe9]", re.S)
_CALL_GOT = re.compile(rb"\xff[\x15\x25]", re.S)


def _slot_names(image: ElfImage, symbols: Symbols) -> list[tuple[int, str | None]]:
    """(GOT slot address, the name its relocation's symbol has) in relocation order."""
    names = symbols.dynsym.names
    count = len(names)
    return [(offset, names[symbol] if symbol < count else None) for offset, symbol in image.symbol_slots()]


def _plt_targets(image: ElfImage, symbols: Symbols, slots: list | None = None) -> dict[int, str]:
    """Map PLT stub addresses to the imported function each one jumps to (through its GOT slot).
    slots: _slot_names, where the caller has them."""
    got_names = {offset: name for offset, name in (_slot_names(image, symbols) if slots is None else slots) if name}
    stubs: dict[int, str] = {}
    for section in image.sections:
        if not section.name.startswith(".plt") or section.size == 0 or section.size > 4_000_000:
            continue
        code = image.section_bytes(section)
        for match in _CALL_GOT.finditer(code):  # jmp [rip+disp32] inside each stub
            pos = match.start()
            if pos + 6 > len(code):
                continue
            disp = struct.unpack_from("<i", code, pos + 2)[0]
            slot = section.addr + pos + 6 + disp
            if slot in got_names:
                stub_start = section.addr + (pos - pos % 16)
                stubs[stub_start] = got_names[slot]
    return stubs


def _got_slot_names(image: ElfImage, symbols: Symbols, slots: list | None = None) -> dict[int, str | None]:
    """GOT slot address -> the symbol its relocation names (the last relocation there wins, even
    one without a name: then nothing is called through it)."""
    return dict(_slot_names(image, symbols) if slots is None else slots)


def _decode_init_body(image: ElfImage, symbols: Symbols, start: int, size: int,
                      plt: dict[int, str], got_names: dict[int, str | None] | None = None) -> tuple[list[int], set[str]]:
    """rip-relative lea targets and names of imported functions called/jumped to from one function.
    got_names: _got_slot_names, made once for all init functions of the file."""
    code = image.read(start, size) if size else None
    if code is None:
        return [], set()
    if got_names is None:
        got_names = _got_slot_names(image, symbols)
    lea_targets = []
    for match in _LEA_RIP.finditer(code):
        pos = match.start()
        if pos + 7 <= len(code):
            lea_targets.append(start + pos + 7 + struct.unpack_from("<i", code, pos + 3)[0])
    called: set[str] = set()
    for match in _CALL_REL.finditer(code):
        pos = match.start()
        if pos + 5 <= len(code):
            target = start + pos + 5 + struct.unpack_from("<i", code, pos + 1)[0]
            if target in plt:
                called.add(plt[target])
    for match in _CALL_GOT.finditer(code):  # -fno-plt: call/jmp [rip+disp32] straight through the GOT
        pos = match.start()
        if pos + 6 <= len(code):
            slot = start + pos + 6 + struct.unpack_from("<i", code, pos + 2)[0]
            if got_names.get(slot):
                called.add(got_names[slot])
    return lea_targets, called


# ---------------------------------------------------------------------------- the chain
def read_module_inits(image: ElfImage, symbols: Symbols, imports: set[str]) -> InitInfo:
    info = _InitsBeingRead(imports_single_phase=any(n in imports for n in SINGLE_PHASE_CREATORS),
                           imports_multi_phase=MULTI_PHASE_INIT in imports)
    init_symbols = symbols.defined_dynamic_with_prefix("PyInit_")
    exports = read_module_exports(image, symbols) if symbols.defined_dynamic_with_prefix(MODEXPORT_PREFIX) else {}
    if not init_symbols:
        return info.with_exports(exports).frozen()
    x86 = image.machine == EM_X86_64 and image.little_endian
    slots = _slot_names(image, symbols) if x86 else []
    plt = _plt_targets(image, symbols, slots) if x86 else {}
    got_names = _got_slot_names(image, symbols, slots)   # once: a file may hold a hundred PyInit_
    def_candidates: list[int] | None = None

    for sym in sorted(init_symbols, key=lambda s: s.name):
        module = sym.name[len("PyInit_"):]
        lea_targets, called = (_decode_init_body(image, symbols, sym.value, sym.size, plt, got_names)
                               if x86 and sym.type == STT_FUNC else ([], set()))
        first = len(info.inits)
        defs = [t for t in lea_targets if _looks_like_moduledef(image, t)]
        if not defs and lea_targets and info.imports_multi_phase:
            # PyO3 passes the address of its own ModuleDef, which holds the PyModuleDef inside.
            if def_candidates is None:
                def_candidates = _moduledef_candidates(image)
            defs = _embedded_defs(lea_targets, def_candidates)
        stores = None
        if defs and (MULTI_PHASE_INIT in called or not called & set(SINGLE_PHASE_CREATORS)) and info.imports_multi_phase:
            m_size, slots = read_moduledef(image, defs[0])
            if not slots.readable and slots.address is not None:
                stores = read_stores(image, sym.value, image.read(sym.value, sym.size) or b"")
                slots = _slots_from_stores(image, stores, slots, sym.name)
            info.inits.append(ModuleInit(sym.name, module, InitKind.MULTI_PHASE, True,
                                         f"{sym.name} passes a PyModuleDef to {MULTI_PHASE_INIT}",
                                         defs[0], m_size, slots))
            continue
        if called & set(SINGLE_PHASE_CREATORS):
            creator = sorted(called & set(SINGLE_PHASE_CREATORS))[0]
            m_size = read_moduledef(image, defs[0])[0] if defs else None
            info.inits.append(ModuleInit(sym.name, module, InitKind.SINGLE_PHASE, True,
                                         f"{sym.name} calls {creator}", defs[0] if defs else None, m_size))
            continue
        # The init function delegates (Cython, pybind11, PyO3 helpers): decide from what the binary imports.
        if info.imports_multi_phase and not info.imports_single_phase:
            if def_candidates is None:
                def_candidates = _moduledef_candidates(image)
            written = (slots_written_anywhere(read_stores(image, sym.value, image.read(sym.value, sym.size) or b""),
                                              module_slot_id, frozenset({Py_mod_multiple_interpreters}))
                       if x86 and sym.type == STT_FUNC and sym.size else None)
            if written is not None:
                m_size, slots = None, Slots(written, how=f"{sym.name} stores the slot table at run time")
                how = f"{sym.name} writes a slot table and the binary imports only PyModuleDef_Init"
            elif len(def_candidates) == 1 and len(init_symbols) == 1:
                m_size, slots = read_moduledef(image, def_candidates[0])
                how = "the binary imports only PyModuleDef_Init and holds one PyModuleDef"
            else:
                m_size, slots = None, Slots((), False, "cannot tell which PyModuleDef the init function returns")
                how = "the binary imports only PyModuleDef_Init"
            info.inits.append(ModuleInit(sym.name, module, InitKind.MULTI_PHASE, False, how,
                                         None, m_size, slots))
        elif info.imports_single_phase and not info.imports_multi_phase:
            info.inits.append(ModuleInit(sym.name, module, InitKind.SINGLE_PHASE, False,
                                         "the binary imports PyModule_Create2 and not PyModuleDef_Init"))
        elif not info.imports_single_phase and not info.imports_multi_phase and MODULEDEF_TYPE not in imports:
            # CPython takes the multi-phase path only when PyInit_* returns an object whose type
            # is PyModuleDef_Type; a binary that references neither that type nor
            # PyModuleDef_Init cannot build one, so it returns a module made elsewhere
            # (mypyc shims and cffi modules get theirs from another binary through a capsule),
            # which CPython loads as single-phase. Measured on charset-normalizer's `md` shim
            # and zstandard's `_cffi`: both refused by isolated subinterpreters.
            info.inits.append(ModuleInit(sym.name, module, InitKind.SINGLE_PHASE, False,
                                         "the binary references neither PyModuleDef_Init nor PyModuleDef_Type, "
                                         "so its module is created elsewhere"))
        else:
            reason = ("the binary imports both PyModule_Create2 and PyModuleDef_Init"
                      if info.imports_single_phase else "the binary imports neither PyModule_Create2 nor PyModuleDef_Init")
            info.inits.append(ModuleInit(sym.name, module, InitKind.UNKNOWN, False, reason))
        if len(info.inits) > first:
            info.inits[-1] = replace(info.inits[-1], calls=tuple(sorted(called)))
    return info.with_exports(exports).frozen()


def _embedded_defs(lea_targets: list[int], candidates: list[int], window: int = 64) -> list[int]:
    """The PyModuleDef inside a larger static object whose address the init function takes
    (PyO3's ModuleDef holds it 16 bytes in): the nearest candidate at most `window` bytes after
    the first such address; the next module's object starts well past that."""
    for target in lea_targets:
        found = [c for c in candidates if target <= c < target + window]
        if found:
            return [min(found)]
    return []


def _untouched_zero_table(image: ElfImage, address: int) -> bool:
    """A .bss table that only m_slots points to and no instruction can address stays all zero."""
    addends = image.relocation_columns[3]
    if sum(1 for a in addends if address <= a < address + 16) > 1:
        return False
    return referenced_by_code(image, address, 16) is False


def _slots_from_stores(image: ElfImage, stores, unread: Slots, function: str) -> Slots:
    """A .bss slot table read back from the constant stores the init function makes into it."""
    written = slots_written_at(stores, unread.address, module_slot_id)
    if written is None and _untouched_zero_table(image, unread.address):
        # `static PyModuleDef_Slot slots[] = {{0, NULL}}` lands in .bss: an empty table.
        return Slots((), address=unread.address, how="an all-zero table that no code or data refers to")
    if written is None:
        return unread
    return Slots(written, address=unread.address, how=f"{function} stores the slot table at run time")


def read_module_exports(image: ElfImage, symbols: Symbols) -> dict[str, Slots]:
    """PEP 793 entry points: module name -> the PySlot array PyModExport_<name> returns.
    The function is expected to return the address of a static array (`lea`, then `ret`);
    an array it fills at run time is read back from its stores, as for PyInit_."""
    out: dict[str, Slots] = {}
    x86 = image.machine == EM_X86_64 and image.little_endian
    for sym in sorted(symbols.defined_dynamic_with_prefix(MODEXPORT_PREFIX), key=lambda s: s.name):
        module = sym.name[len(MODEXPORT_PREFIX):]
        code = image.read(sym.value, sym.size) if x86 and sym.type == STT_FUNC and sym.size else None
        if code is None:
            out[module] = Slots((), False, f"cannot decode {sym.name}")
            continue
        targets = [sym.value + m.start() + 7 + struct.unpack_from("<i", code, m.start() + 3)[0]
                   for m in _LEA_RIP.finditer(code) if m.start() + 7 <= len(code)]
        slots = Slots((), False, f"{sym.name} takes no address of a slot array")
        for target in targets:
            slots = read_slots(image, target, pyslot_id)
            if not slots.readable and slots.address is not None and not slots.entries:
                written = slots_written_at(read_stores(image, sym.value, code), target, pyslot_id)
                if written is not None:
                    slots = Slots(written, address=target, how=f"{sym.name} stores the slot array at run time")
            if slots.readable and slots.entries:
                break
        out[module] = slots
    return out


@dataclass
class _InitsBeingRead:
    """The mutable list read_module_inits fills in; what leaves the function is a frozen InitInfo."""

    imports_single_phase: bool
    imports_multi_phase: bool
    inits: list[ModuleInit] = field(default_factory=list)

    def with_exports(self, exports: dict[str, Slots]) -> "_InitsBeingRead":
        """Attach each PyModExport_ array to its PyInit_; an export without one is a module of its own."""
        by_module = {init.module: position for position, init in enumerate(self.inits)}
        for module, slots in exports.items():
            if module in by_module:
                # 3.15 looks for PyModExport_ first: the PyInit_ beside it (often a stub that
                # returns NULL, as pybase64's) decides nothing there.
                self.inits[by_module[module]] = replace(
                    self.inits[by_module[module]], export=slots, kind=InitKind.MULTI_PHASE, proved=True,
                    how=f"{MODEXPORT_PREFIX}{module} returns a slot array (PEP 793), used before PyInit_{module}")
            else:
                self.inits.append(ModuleInit(MODEXPORT_PREFIX + module, module, InitKind.MULTI_PHASE, True,
                                             f"{MODEXPORT_PREFIX}{module} returns a slot array (PEP 793)",
                                             export=slots))
        return self

    def frozen(self) -> InitInfo:
        return InitInfo(tuple(self.inits), self.imports_single_phase, self.imports_multi_phase)


def infer_from_delegate(init: ModuleInit, providers) -> ModuleInit:
    """An init function that only calls into another library (torch._C -> libtorch_python.so's
    initModule) gets the kind that library's imports show. providers: (name, exports, imports)."""
    if init.kind is not InitKind.UNKNOWN or not init.calls:
        return init
    for name, exports, imports in providers:
        called = sorted(set(init.calls) & set(exports))
        if not called:
            continue
        single = any(n in imports for n in SINGLE_PHASE_CREATORS)
        multi = MULTI_PHASE_INIT in imports
        if single and not multi:
            return replace(init, kind=InitKind.SINGLE_PHASE,
                           how=f"{init.symbol} calls `{called[0]}` in {name}, which imports PyModule_Create2")
        if multi and not single:
            return replace(init, kind=InitKind.MULTI_PHASE, how=f"{init.symbol} calls `{called[0]}` in {name}, "
                           "which imports PyModuleDef_Init",
                           slots=Slots((), False, f"the module definition is built in {name}"))
    return init


def _moduledef_candidates(image: ElfImage) -> list[int]:
    """Addresses in writable, file-backed data that look like a PyModuleDef (m_name relocated)."""
    layout = _moduledef_layout(image)
    writable = _writable_at(image)
    m_name = layout["m_name"]
    out = []
    for offset in image.relocation_columns[0]:
        start = offset - m_name
        if writable(start) and _looks_like_moduledef(image, start, layout):
            out.append(start)
    return sorted(set(out))


def _writable_at(image: ElfImage):
    """address -> whether image.section_at(address) is a writable section, by bisection: section
    boundaries cut the address space into runs that lie in the same sections, and each run
    keeps the first of them in header order, the one section_at returns."""
    placed = [s for s in image.sections if s.addr]
    bounds = sorted({s.addr for s in placed} | {s.addr + s.size for s in placed})
    owners = []
    for low in bounds[:-1]:
        owner = next((s for s in placed if s.contains(low)), None)
        owners.append(owner is not None and owner.writable)

    def writable(address: int) -> bool:
        run = bisect_right(bounds, address) - 1
        return 0 <= run < len(owners) and owners[run]

    return writable
