"""The only importer of elftools: one opened ELF file, its sections, dynamic tags, relocations and memory."""
from __future__ import annotations

import mmap
import os
import struct
import sys
from dataclasses import dataclass
from functools import cached_property
from itertools import compress
from pathlib import Path
from typing import BinaryIO

from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"

# Dynamic tags and flags we read (elf.h); spelled out so nothing else needs elftools' names.
DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_FLAGS, DT_FLAGS_1 = 1, 14, 15, 29, 30, 0x6FFFFFFB
DF_STATIC_TLS = 0x10
PT_LOAD, PT_TLS = 1, 7
SHT_SYMTAB, SHT_STRTAB, SHT_DYNSYM, SHT_RELA, SHT_REL, SHT_NOBITS, SHT_DYNAMIC = 2, 3, 11, 4, 9, 8, 6
SHF_WRITE = 0x1

EM_X86_64 = 62
EM_AARCH64 = 183

# Relocation types that mean "pointer = load base + addend" or "pointer = symbol + addend".
_RELATIVE_TYPES = {EM_X86_64: 8, EM_AARCH64: 1027, 3: 8}          # R_*_RELATIVE
_ABSOLUTE_TYPES = {EM_X86_64: {1}, EM_AARCH64: {257}, 3: {1}}      # R_X86_64_64, R_AARCH64_ABS64, R_386_32
_GLOB_DAT_TYPES = {EM_X86_64: {6, 7}, EM_AARCH64: {1025, 1026}, 3: {6, 7}}  # GLOB_DAT, JUMP_SLOT
# Initial-exec / local-exec TLS relocations against the static TLS block (x86-64 TPOFF64/TPOFF32).
_STATIC_TLS_TYPES = {EM_X86_64: {18, 23}, EM_AARCH64: {1030}, 3: {14, 37}}


def is_elf(path: Path) -> bool:
    """True when the file starts with the ELF magic; never raises."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == ELF_MAGIC
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    flags: int
    link: int
    entsize: int

    def contains(self, vaddr: int) -> bool:
        return self.addr <= vaddr < self.addr + self.size

    @property
    def writable(self) -> bool:
        return bool(self.flags & SHF_WRITE)


@dataclass(frozen=True, slots=True)
class Relocation:
    offset: int      # where the relocated word lives (vaddr)
    type: int
    symbol_index: int
    addend: int      # explicit for RELA; for REL, the word already in the file


class ElfImage:
    """A read-only view of one ELF file; everything is read lazily and at most once."""

    def __init__(self, path: Path, stream: BinaryIO):
        self.path = Path(path)
        self._stream = stream
        stream.seek(0)
        head = stream.read(64)
        layout = _Layout.of(head)
        if layout is None:
            # Not plainly an ELF header: pyelftools decides, and raises what it raises.
            elf = self._elf
            self.elfclass: int = elf.elfclass
            self.little_endian: bool = elf.little_endian
            self.machine: int = _machine_number(elf.header["e_machine"])
            self.elf_type: str | int = elf.header["e_type"]
        else:
            self.elfclass, self.little_endian = layout.elfclass, layout.little_endian
            self.machine = layout.machine
            self.elf_type = layout.e_type
        self._layout = layout
        self.endian = "<" if self.little_endian else ">"
        self.pointer_size = 8 if self.elfclass == 64 else 4
        self._ptr = struct.Struct(self.endian + ("Q" if self.elfclass == 64 else "I"))

    @cached_property
    def _elf(self) -> ELFFile:
        """pyelftools' view of the file, built only where the struct reader hands over to it."""
        return ELFFile(self._stream)

    @classmethod
    def open(cls, path: Path) -> "ElfImage":
        stream = open(path, "rb")
        try:
            return cls(path, stream)
        except BaseException:
            stream.close()
            raise

    def close(self) -> None:
        mapped = self.__dict__.pop("mapping", None)
        if mapped is not None:
            try:
                mapped.close()
            except BufferError:   # a memoryview of it is still held: the mapping goes with the last one
                pass
        self._stream.close()

    def __enter__(self) -> "ElfImage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @cached_property
    def file_size(self) -> int:
        position = self._stream.tell()
        size = self._stream.seek(0, os.SEEK_END)
        self._stream.seek(position)
        return size

    # ------------------------------------------------------------------ sections
    @cached_property
    def sections(self) -> list[Section]:
        fast = self._layout.sections(self) if self._layout is not None else None
        return fast if fast is not None else self._sections_pyelftools()

    def _sections_pyelftools(self) -> list[Section]:
        # Headers and names only: iter_sections() would also build every section object, and
        # pyelftools parses a whole GNU hash table on construction (0.5 s over torch's libraries).
        self._layout = None   # segments and .dynamic follow the same reader
        out = []
        elf = self._elf
        for index in range(elf.num_sections()):
            header = elf._get_section_header(index)
            if header["sh_type"] == "SHT_GNU_HASH":
                name = elf._get_section_name(header)
            else:  # built as iter_sections() would, so a malformed section fails the same way
                name = elf._make_section(header).name
            out.append(Section(name, _section_type_number(header["sh_type"]), header["sh_addr"],
                               header["sh_offset"], header["sh_size"], header["sh_flags"],
                               header["sh_link"], header["sh_entsize"]))
        return out

    def section_by_name(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def sections_of_type(self, section_type: int) -> list[Section]:
        return [s for s in self.sections if s.type == section_type]

    def section_bytes(self, section: Section) -> bytes:
        if section.type == SHT_NOBITS or section.size == 0:
            return b""
        # Check before reading: a forged sh_size would otherwise be allocated up front.
        if section.offset + section.size > self.file_size:
            raise ValueError(f"section {section.name or section.type} runs past the end of the file")
        self._stream.seek(section.offset)
        data = self._stream.read(section.size)
        if len(data) != section.size:
            raise ValueError(f"section {section.name or section.type} runs past the end of the file")
        return data

    @cached_property
    def mapping(self) -> "mmap.mmap | None":
        """The whole file mapped read-only (None where it cannot be mapped): large sections are
        searched in place instead of copied (libtorch_cpu.so's .rodata is 18 MB, .strtab 76 MB)."""
        try:
            return mmap.mmap(self._stream.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None

    def section_span(self, section: Section) -> tuple["bytes | mmap.mmap", int, int]:
        """(haystack, start, end): the section's bytes as haystack[start:end], without copying them
        where the file is mapped. Same checks, same errors as section_bytes."""
        if section.type == SHT_NOBITS or section.size == 0:
            return b"", 0, 0
        if section.offset + section.size > self.file_size:
            raise ValueError(f"section {section.name or section.type} runs past the end of the file")
        mapped = self.mapping
        if mapped is None:
            data = self.section_bytes(section)
            return data, 0, len(data)
        return mapped, section.offset, section.offset + section.size

    def section_at(self, vaddr: int) -> Section | None:
        return next((s for s in self.sections if s.addr and s.contains(vaddr)), None)

    # ------------------------------------------------------------------ segments
    @cached_property
    def segments(self) -> list[tuple[int, int, int, int, int, int]]:
        """(type, offset, vaddr, filesz, memsz, flags) per program header."""
        layout = self._layout
        count = layout.e_phnum if layout is not None and layout.e_phnum < 0xFFFF else self._elf.num_segments()
        entsize, table = (layout.e_phentsize, layout.e_phoff) if layout is not None else (
            self._elf.header["e_phentsize"], self._elf.header["e_phoff"])
        # pyelftools accepts e_phentsize 0 and then parses the same entry e_phnum (up to 65535) times.
        if count and (entsize < (56 if self.elfclass == 64 else 32) or table + count * entsize > self.file_size):
            raise ValueError(f"program header table ({count} entries of {entsize} bytes at {table}) "
                             "does not fit in the file")
        if layout is not None and layout.e_phnum < 0xFFFF:
            return layout.segments(self, count)
        out = []
        # Headers only: iter_segments() builds a DynamicSegment, which builds every section object.
        for index in range(count):
            header = self._elf._get_segment_header(index)
            ptype = header["p_type"]
            ptype = ptype if isinstance(ptype, int) else {"PT_LOAD": PT_LOAD, "PT_TLS": PT_TLS}.get(ptype, -1)
            out.append((ptype, header["p_offset"], header["p_vaddr"], header["p_filesz"],
                        header["p_memsz"], header["p_flags"]))
        return out

    @cached_property
    def tls_segment(self) -> tuple[int, int] | None:
        """(filesz, memsz) of PT_TLS: the per-thread block every thread (and namespace) pays for."""
        for ptype, _off, _vaddr, filesz, memsz, _flags in self.segments:
            if ptype == PT_TLS:
                return filesz, memsz
        return None

    def read(self, vaddr: int, size: int) -> bytes | None:
        """Bytes of the loaded image at vaddr as the file initialises them; None when not file-backed."""
        for ptype, offset, seg_vaddr, filesz, memsz, _flags in self.segments:
            if ptype != PT_LOAD or not (seg_vaddr <= vaddr and vaddr + size <= seg_vaddr + memsz):
                continue
            if vaddr + size > seg_vaddr + filesz:
                # .bss: zero-initialised at load, filled in only at run time.
                return None
            self._stream.seek(offset + vaddr - seg_vaddr)
            data = self._stream.read(size)
            return data if len(data) == size else None
        return None

    def read_ptr_raw(self, vaddr: int) -> int | None:
        data = self.read(vaddr, self.pointer_size)
        return None if data is None else self._ptr.unpack(data)[0]

    # ------------------------------------------------------------------ dynamic
    @cached_property
    def dynamic(self) -> list[tuple[int, int | str]]:
        """(tag, value) pairs of .dynamic, string tags resolved to their text."""
        index = next((i for i, s in enumerate(self.sections) if s.type == SHT_DYNAMIC), None)
        if index is None:
            return []
        link = self.sections[index].link
        if not (0 < link < len(self.sections)) or self.sections[link].type != SHT_STRTAB:
            # pyelftools only asserts this, so a forged sh_link would surface as a bare AssertionError.
            raise ValueError(f".dynamic links to section {link}, which is not a string table")
        if self._layout is not None:
            fast = self._layout.dynamic(self, self.sections[index], self.sections[link])
            if fast is not None:
                return fast
        out: list[tuple[int, int | str]] = []
        for tag in self._elf.get_section(index).iter_tags():
            number = _dynamic_tag_number(tag.entry["d_tag"])
            if number in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH):
                attr = {DT_NEEDED: "needed", DT_SONAME: "soname", DT_RPATH: "rpath", DT_RUNPATH: "runpath"}[number]
                out.append((number, getattr(tag, attr)))
            elif number == 0:
                break
            else:
                out.append((number, tag.entry["d_val"]))
        return out

    def cstring(self, offset: int) -> str:
        """The NUL-terminated string at a file offset, as pyelftools' StringTableSection.get_string
        reads it: up to the first NUL anywhere after it in the file, '' when none follows,
        UTF-8 with replacement."""
        mapped = self.mapping
        if mapped is not None:
            if offset >= len(mapped):
                # pyelftools seeks there first: an offset no file can have fails the same way
                self._stream.seek(offset)
                return ""
            end = mapped.find(b"\0", offset)
            raw = mapped[offset:end] if end >= 0 else b""
        else:
            from elftools.common.utils import parse_cstring_from_stream

            raw = parse_cstring_from_stream(self._stream, offset) or b""
        return raw.decode("utf-8", errors="replace") if raw else ""

    def dynamic_values(self, tag: int) -> list:
        return [value for number, value in self.dynamic if number == tag]

    # ------------------------------------------------------------------ relocations
    @cached_property
    def relocation_columns(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """(offsets, types, symbol indexes, addends) of the dynamic relocations (.rela.dyn/.rela.plt
        or .rel.*), in table order. Columns, not a Relocation per entry: an extension can carry
        100k relocations, and each question reads one or two columns of them."""
        offsets: list[int] = []
        types: list[int] = []
        symbols: list[int] = []
        addends: list[int] = []
        rela = struct.Struct(self.endian + ("QQq" if self.elfclass == 64 else "IIi"))
        rel = struct.Struct(self.endian + ("QQ" if self.elfclass == 64 else "II"))
        dynsym_index = next((i for i, s in enumerate(self.sections) if s.type == SHT_DYNSYM), None)
        native64 = self.elfclass == 64 and self.little_endian and sys.byteorder == "little"
        for section in self.sections:
            if section.type not in (SHT_RELA, SHT_REL) or section.size == 0:
                continue
            # Only relocations the dynamic loader applies (linked to .dynsym, or unlinked RELATIVE-only tables).
            if section.link not in (0, dynsym_index):
                continue
            layout = rela if section.type == SHT_RELA else rel
            data = self.section_bytes(section)
            data = data[: len(data) - len(data) % layout.size]
            if native64 and section.type == SHT_RELA:
                # Elf64_Rela as 64-bit words (offset, info, addend); info's low half is the type.
                view = memoryview(data)
                words = view.cast("Q")
                halves = view.cast("I")
                offsets += words[0::3].tolist()
                types += halves[2::6].tolist()
                symbols += halves[3::6].tolist()
                addends += view.cast("q")[2::3].tolist()
                continue
            for entry in layout.iter_unpack(data):
                offset, info = entry[0], entry[1]
                if self.elfclass == 64:
                    rtype, symbol = info & 0xFFFFFFFF, info >> 32
                else:
                    rtype, symbol = info & 0xFF, info >> 8
                addend = entry[2] if section.type == SHT_RELA else (self.read_ptr_raw(offset) or 0)
                offsets.append(offset)
                types.append(rtype)
                symbols.append(symbol)
                addends.append(addend)
        return offsets, types, symbols, addends

    @cached_property
    def relocations(self) -> list[Relocation]:
        """Dynamic relocations (.rela.dyn/.rela.plt or .rel.*), one object each."""
        return list(map(Relocation, *self.relocation_columns))

    @cached_property
    def relocation_index(self) -> dict[int, int]:
        """Relocated address -> position in relocation_columns (the last relocation there, as
        relocation_at keeps it)."""
        offsets = self.relocation_columns[0]
        return dict(zip(offsets, range(len(offsets))))

    @cached_property
    def relocation_at(self) -> dict[int, Relocation]:
        return {r.offset: r for r in self.relocations}

    def relocation_of(self, vaddr: int) -> Relocation | None:
        """relocation_at.get(vaddr), built for that one address."""
        index = self.relocation_index.get(vaddr)
        if index is None:
            return None
        offsets, types, symbols, addends = self.relocation_columns
        return Relocation(offsets[index], types[index], symbols[index], addends[index])

    def symbol_slots(self) -> list[tuple[int, int]]:
        """(address, symbol index) of each GLOB_DAT/JUMP_SLOT relocation with a symbol, in table order."""
        offsets, types, symbols, _addends = self.relocation_columns
        kinds = _GLOB_DAT_TYPES.get(self.machine, ())
        if not kinds:
            return []
        rows = compress(zip(offsets, symbols), map(kinds.__contains__, types))
        return [(offset, symbol) for offset, symbol in rows if symbol]

    def is_relative(self, reloc: Relocation) -> bool:
        return reloc.type == _RELATIVE_TYPES.get(self.machine)

    def is_absolute(self, reloc: Relocation) -> bool:
        return reloc.type in _ABSOLUTE_TYPES.get(self.machine, ())

    def is_symbol_slot(self, reloc: Relocation) -> bool:
        return reloc.type in _GLOB_DAT_TYPES.get(self.machine, ())

    def is_static_tls(self, reloc: Relocation) -> bool:
        return reloc.type in _STATIC_TLS_TYPES.get(self.machine, ())

    def read_ptr(self, vaddr: int) -> tuple[str, int] | None:
        """The pointer stored at vaddr once the loader has run.

        ("address", value) for a link-time address (RELATIVE relocation or a plain word),
        ("symbol", index) for a relocation against a dynamic symbol (addend ignored),
        None where the word is not file-backed (.bss, filled in at run time).
        """
        index = self.relocation_index.get(vaddr)
        if index is not None:
            _offsets, types, symbols, addends = self.relocation_columns
            if types[index] == _RELATIVE_TYPES.get(self.machine):
                return ("address", addends[index])
            if symbols[index]:
                return ("symbol", symbols[index])
            return ("address", addends[index])
        value = self.read_ptr_raw(vaddr)
        return None if value is None else ("address", value)


# ---------------------------------------------------------------------------- the struct reader
SHF_COMPRESSED = 0x800
SHN_XINDEX_HEADER = 0xFFFF

# pyelftools' _make_section builds these section kinds with checks of their own; the struct
# reader proves each check passes (or hands the whole file to pyelftools), so a file is
# refused, or read, exactly as before.
_SYMBOL_TABLES = ("SHT_SYMTAB", "SHT_DYNSYM", "SHT_SUNW_LDYNSYM")
_HANDED_OVER = ("SHT_SUNW_syminfo", "SHT_ARM_ATTRIBUTES", "SHT_RISCV_ATTRIBUTES")


class _Layout:
    """ELF header, section headers, program headers and .dynamic read with `struct`, for files
    whose header is plainly valid; every decision pyelftools would make (which names its
    enums give, which section objects it would refuse to build) is made the same way here, with
    its own enum tables, and anything this reader does not prove goes back to pyelftools.
    Building pyelftools' construct structs on every open and parsing each header through them
    was a quarter of the torch scan (tests/elf/test_struct_reader.py holds both to the same
    answers on real and damaged files)."""

    __slots__ = ("elfclass", "little_endian", "machine", "e_type", "e_phoff", "e_shoff", "e_phentsize",
                 "e_phnum", "e_shentsize", "e_shnum", "e_shstrndx", "tables")

    @classmethod
    def of(cls, head: bytes) -> "_Layout | None":
        # pyelftools opens exactly the files with the magic, EI_CLASS and EI_DATA 1 or 2 and a
        # whole header (every other header field decodes, unknown values pass as numbers).
        if len(head) < 6 or head[:4] != ELF_MAGIC or head[4] not in (1, 2) or head[5] not in (1, 2):
            return None
        elfclass, little = (32 if head[4] == 1 else 64), head[5] == 1
        endian = "<" if little else ">"
        if elfclass == 64:
            if len(head) < 64:
                return None
            fields = struct.unpack_from(endian + "HHIQQQIHHHHHH", head, 16)
        else:
            if len(head) < 52:
                return None
            fields = struct.unpack_from(endian + "HHIIIIIHHHHHH", head, 16)
        e_type, e_machine, _version, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum, shentsize, shnum, \
            shstrndx = fields
        layout = cls()
        layout.elfclass, layout.little_endian, layout.machine = elfclass, little, e_machine
        layout.e_phoff, layout.e_shoff, layout.e_phentsize, layout.e_phnum = phoff, shoff, phentsize, phnum
        layout.e_shentsize, layout.e_shnum, layout.e_shstrndx = shentsize, shnum, shstrndx
        layout.tables = _tables(head[:64] if elfclass == 64 else head[:52], little, elfclass, e_type, e_machine, head[7])
        layout.e_type = layout.tables.e_type
        return layout

    # -------------------------------------------------------------- sections
    def sections(self, image: "ElfImage") -> list[Section] | None:
        if self.e_shoff == 0:
            return []
        t = self.tables
        count, entsize = self.e_shnum, self.e_shentsize
        if (count == 0 or entsize < t.shdr_size or self.e_shoff + count * entsize > image.file_size
                or self.e_shstrndx == SHN_XINDEX_HEADER or self.e_shstrndx >= count):
            return None
        image._stream.seek(self.e_shoff)
        table = image._stream.read(count * entsize)
        if len(table) != count * entsize:
            return None
        shdr = struct.Struct(("<" if self.little_endian else ">") + ("IIQQQQIIQQ" if self.elfclass == 64 else "IIIIIIIIII"))
        headers = [shdr.unpack_from(table, i * entsize) for i in range(count)]
        # (sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign, sh_entsize)
        kinds = [t.sh_type.get(h[1]) for h in headers]
        if any(h[2] & SHF_COMPRESSED for h in headers):
            return None   # pyelftools parses a compression header for these
        strtab_at = headers[self.e_shstrndx][4]
        names = [image.cstring(strtab_at + h[0]) for h in headers]

        def strtab(k: int) -> bool:
            return 0 <= k < count and kinds[k] == "SHT_STRTAB"

        def symbols(k: int, kinds_allowed=_SYMBOL_TABLES) -> bool:
            if not (0 <= k < count and kinds[k] in kinds_allowed):
                return False
            _n, _t, _f, _a, _o, size, link, _i, _al, ent = headers[k]
            return strtab(link) and ent > 0 and size % ent == 0

        for index, (header, kind) in enumerate(zip(headers, kinds)):
            _n, _t, _f, _a, offset, size, link, _i, _al, ent = header
            if kind in _SYMBOL_TABLES:
                ok = symbols(index)
            elif kind in ("SHT_GNU_verneed", "SHT_GNU_verdef"):
                ok = strtab(link)
            elif kind == "SHT_GNU_versym":
                ok = symbols(link, ("SHT_SYMTAB", "SHT_DYNSYM"))
            elif kind in ("SHT_REL", "SHT_RELA"):
                ok = ent == (t.rel_size if kind == "SHT_REL" else t.rela_size)
            elif kind == "SHT_RELR":
                ok = ent == t.relr_size
            elif kind == "SHT_DYNAMIC":
                ok = 0 <= link < count and kinds[link] in ("SHT_STRTAB", "SHT_NOBITS", "SHT_NULL")
            elif kind == "SHT_HASH":
                ok = symbols(link, ("SHT_SYMTAB", "SHT_DYNSYM")) and self._hash_fits(image, offset, size)
            elif kind in _HANDED_OVER or (kind == "SHT_PROGBITS" and names[index] == ".stab"):
                ok = False
            else:
                ok = True
            if not ok:
                return None
        base = t.sh_type_base
        return [Section(name, h[1] if kind is None else base.get(kind, -1), h[3], h[4], h[5], h[2], h[6], h[9])
                for name, h, kind in zip(names, headers, kinds)]

    def _hash_fits(self, image: "ElfImage", offset: int, size: int) -> bool:
        """pyelftools parses a whole SysV hash table (both arrays) when it builds the section."""
        if size == 0:
            return True
        if offset + 8 > image.file_size:
            return False
        image._stream.seek(offset)
        nbuckets, nchains = struct.unpack(("<" if self.little_endian else ">") + "II", image._stream.read(8))
        return offset + 8 + 4 * (nbuckets + nchains) <= image.file_size

    # -------------------------------------------------------------- segments
    def segments(self, image: "ElfImage", count: int) -> list[tuple[int, int, int, int, int, int]]:
        """The program headers; the caller has checked that the table fits in the file."""
        if not count:
            return []
        image._stream.seek(self.e_phoff)
        table = image._stream.read(count * self.e_phentsize)
        endian = "<" if self.little_endian else ">"
        names = self.tables.p_type
        out = []
        if self.elfclass == 64:
            phdr = struct.Struct(endian + "IIQQQQQQ")
            for index in range(count):
                ptype, flags, offset, vaddr, _paddr, filesz, memsz, _align = phdr.unpack_from(table, index * self.e_phentsize)
                out.append((_segment_type(ptype, names), offset, vaddr, filesz, memsz, flags))
        else:
            phdr = struct.Struct(endian + "IIIIIIII")
            for index in range(count):
                ptype, offset, vaddr, _paddr, filesz, memsz, flags, _align = phdr.unpack_from(table, index * self.e_phentsize)
                out.append((_segment_type(ptype, names), offset, vaddr, filesz, memsz, flags))
        return out

    # -------------------------------------------------------------- .dynamic
    def dynamic(self, image: "ElfImage", section: Section, strings: Section) -> list[tuple[int, int | str]] | None:
        """Tags from the section's offset to DT_NULL, read as DynamicSection.iter_tags reads
        them (past sh_size if need be); None (pyelftools decides) if the file ends first."""
        t = self.tables
        size = t.dyn_size
        entry = struct.Struct(("<" if self.little_endian else ">") + ("qQ" if self.elfclass == 64 else "iI"))
        out: list[tuple[int, int | str]] = []
        at, end = section.offset, image.file_size
        chunk, chunk_at = b"", at
        common = t.d_tag_common
        while True:
            if at + size > end:
                return None
            if at + size > chunk_at + len(chunk):
                image._stream.seek(at)
                chunk, chunk_at = image._stream.read(max(size, 64 * size)), at
            tag, value = entry.unpack_from(chunk, at - chunk_at)
            name = t.d_tag.get(tag)
            number = tag if name is None else common.get(name, -1)
            if number in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH):
                out.append((number, image.cstring(strings.offset + value)))
            elif number == 0:
                return out
            else:
                out.append((number, value))
            at += size


def _segment_type(ptype: int, names: dict) -> int:
    name = names.get(ptype)
    return ptype if name is None else {"PT_LOAD": PT_LOAD, "PT_TLS": PT_TLS}.get(name, -1)


@dataclass(frozen=True)
class _Tables:
    """What pyelftools' ELFStructs decide for one kind of file: enum decodings and entry sizes."""

    e_type: str | int
    sh_type: dict
    sh_type_base: dict
    p_type: dict
    d_tag: dict
    d_tag_common: dict
    shdr_size: int
    rel_size: int
    rela_size: int
    relr_size: int
    dyn_size: int


_TABLES: dict[tuple, _Tables] = {}


def _tables(head: bytes, little: bool, elfclass: int, e_type: int, e_machine: int, osabi: int) -> _Tables:
    """Taken from the structs pyelftools would build for this header, once per kind of file."""
    key = (little, elfclass, e_type, e_machine, osabi)
    found = _TABLES.get(key)
    if found is None:
        from elftools.elf.enums import ENUM_D_TAG_COMMON, ENUM_SH_TYPE_BASE
        from elftools.elf.structs import ELFStructs

        structs = ELFStructs(little_endian=little, elfclass=elfclass)
        structs.create_basic_structs()
        header = structs.Elf_Ehdr.parse(head)
        structs.create_advanced_structs(header["e_type"], header["e_machine"], header["e_ident"]["EI_OSABI"])

        def decoding(struct_, field_name: str) -> dict:
            return dict(next(c for c in struct_.subcons if c.name == field_name).decoding)

        found = _TABLES[key] = _Tables(
            e_type=header["e_type"], sh_type=decoding(structs.Elf_Shdr, "sh_type"),
            sh_type_base=dict(ENUM_SH_TYPE_BASE), p_type=decoding(structs.Elf_Phdr, "p_type"),
            d_tag=decoding(structs.Elf_Dyn, "d_tag"), d_tag_common=dict(ENUM_D_TAG_COMMON),
            shdr_size=structs.Elf_Shdr.sizeof(), rel_size=structs.Elf_Rel.sizeof(),
            rela_size=structs.Elf_Rela.sizeof(), relr_size=structs.Elf_Relr.sizeof(),
            dyn_size=structs.Elf_Dyn.sizeof())
    return found


def _machine_number(value) -> int:
    if isinstance(value, int):
        return value
    from elftools.elf.enums import ENUM_E_MACHINE

    return ENUM_E_MACHINE.get(value, -1)


def _section_type_number(value) -> int:
    if isinstance(value, int):
        return value
    from elftools.elf.enums import ENUM_SH_TYPE_BASE

    return ENUM_SH_TYPE_BASE.get(value, -1)


def _dynamic_tag_number(value) -> int:
    if isinstance(value, int):
        return value
    from elftools.elf.enums import ENUM_D_TAG_COMMON

    return ENUM_D_TAG_COMMON.get(value, -1)
