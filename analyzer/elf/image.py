"""The only importer of elftools: one opened ELF file, its sections, dynamic tags, relocations and memory."""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from functools import cached_property
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
        self._elf = ELFFile(stream)
        header = self._elf.header
        self.elfclass: int = self._elf.elfclass
        self.little_endian: bool = self._elf.little_endian
        self.machine: int = _machine_number(header["e_machine"])
        self.elf_type: str = header["e_type"]
        self.endian = "<" if self.little_endian else ">"
        self.pointer_size = 8 if self.elfclass == 64 else 4
        self._ptr = struct.Struct(self.endian + ("Q" if self.elfclass == 64 else "I"))

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
        # Headers and names only: iter_sections() would also build every section object, and
        # pyelftools parses a whole GNU hash table on construction (0.5 s over torch's libraries).
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
        count = self._elf.num_segments()
        entsize, table = self._elf.header["e_phentsize"], self._elf.header["e_phoff"]
        # pyelftools accepts e_phentsize 0 and then parses the same entry e_phnum (up to 65535) times.
        if count and (entsize < (56 if self.elfclass == 64 else 32) or table + count * entsize > self.file_size):
            raise ValueError(f"program header table ({count} entries of {entsize} bytes at {table}) "
                             "does not fit in the file")
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

    def dynamic_values(self, tag: int) -> list:
        return [value for number, value in self.dynamic if number == tag]

    # ------------------------------------------------------------------ relocations
    @cached_property
    def relocations(self) -> list[Relocation]:
        """Dynamic relocations (.rela.dyn/.rela.plt or .rel.*), unpacked in bulk."""
        out: list[Relocation] = []
        rela = struct.Struct(self.endian + ("QQq" if self.elfclass == 64 else "IIi"))
        rel = struct.Struct(self.endian + ("QQ" if self.elfclass == 64 else "II"))
        dynsym_index = next((i for i, s in enumerate(self.sections) if s.type == SHT_DYNSYM), None)
        for section in self.sections:
            if section.type not in (SHT_RELA, SHT_REL) or section.size == 0:
                continue
            # Only relocations the dynamic loader applies (linked to .dynsym, or unlinked RELATIVE-only tables).
            if section.link not in (0, dynsym_index):
                continue
            layout = rela if section.type == SHT_RELA else rel
            data = self.section_bytes(section)
            data = data[: len(data) - len(data) % layout.size]
            for entry in layout.iter_unpack(data):
                offset, info = entry[0], entry[1]
                if self.elfclass == 64:
                    rtype, symbol = info & 0xFFFFFFFF, info >> 32
                else:
                    rtype, symbol = info & 0xFF, info >> 8
                addend = entry[2] if section.type == SHT_RELA else (self.read_ptr_raw(offset) or 0)
                out.append(Relocation(offset, rtype, symbol, addend))
        return out

    @cached_property
    def relocation_at(self) -> dict[int, Relocation]:
        return {r.offset: r for r in self.relocations}

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
        reloc = self.relocation_at.get(vaddr)
        if reloc is not None:
            if self.is_relative(reloc):
                return ("address", reloc.addend)
            if reloc.symbol_index:
                return ("symbol", reloc.symbol_index)
            return ("address", reloc.addend)
        value = self.read_ptr_raw(vaddr)
        return None if value is None else ("address", value)


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
