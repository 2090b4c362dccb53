"""Bulk symbol-table unpacking: one read per table, one struct.iter_unpack, names sliced from the string table."""
from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from functools import cached_property
from itertools import count
from typing import Iterator

from interpkit.analyzer.elf.image import SHT_DYNSYM, SHT_SYMTAB, ElfImage

SHT_SYMTAB_SHNDX = 18
SHN_UNDEF, SHN_ABS, SHN_COMMON, SHN_XINDEX = 0, 0xFFF1, 0xFFF2, 0xFFFF

STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10  # GCC spells GNU_UNIQUE as STB_LOOS
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE, STT_COMMON, STT_TLS, STT_GNU_IFUNC = 0, 1, 2, 3, 4, 5, 6, 10
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN, STV_PROTECTED = 0, 1, 2, 3

# Linker-made markers every shared object exports; never a clash worth reporting.
LINKER_SYMBOLS = frozenset({"_init", "_fini", "_edata", "_end", "__bss_start", "_DYNAMIC",
                            "_GLOBAL_OFFSET_TABLE_", "__dso_handle", "__TMC_END__"})


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    value: int
    size: int
    bind: int
    type: int
    visibility: int
    shndx: int
    dynamic: bool   # from .dynsym (visible to the loader) rather than .symtab

    @property
    def defined(self) -> bool:
        return self.shndx != SHN_UNDEF

    @property
    def exported(self) -> bool:
        """Defined, not local, default or protected visibility, in .dynsym: other objects can bind to it."""
        return (self.dynamic and self.defined and self.bind != STB_LOCAL
                and self.visibility in (STV_DEFAULT, STV_PROTECTED))


class SymbolTable:
    """Columns of one symbol section; rows become Symbol objects only when asked for."""

    def __init__(self, names: list[str], rows: list[tuple[int, int, int, int, int]] | None, dynamic: bool,
                 columns: tuple[list[int], ...] | None = None):
        # rows: (value, size, info, other, shndx); columns: the same five as lists, rows built on demand
        self.names = names
        self.dynamic = dynamic
        if rows is not None:
            self.rows = rows
        if columns is not None:
            self.values, self.sizes, self.infos, self.others, self.shndxs = columns

    @cached_property
    def rows(self) -> list[tuple[int, int, int, int, int]]:
        # Zipping 75k tuples costs more than most questions do: built only for callers that want rows.
        return list(zip(self.values, self.sizes, self.infos, self.others, self.shndxs))

    # Single columns: filters over one column skip unpacking a row tuple each.
    @cached_property
    def values(self) -> list[int]:
        return [row[0] for row in self.rows]

    @cached_property
    def sizes(self) -> list[int]:
        return [row[1] for row in self.rows]

    @cached_property
    def infos(self) -> list[int]:
        return [row[2] for row in self.rows]

    @cached_property
    def others(self) -> list[int]:
        return [row[3] for row in self.rows]

    @cached_property
    def shndxs(self) -> list[int]:
        return [row[4] for row in self.rows]

    def __len__(self) -> int:
        return len(self.names)

    def symbol(self, index: int) -> Symbol:
        value, size, info, other, shndx = (self.values[index], self.sizes[index], self.infos[index],
                                           self.others[index], self.shndxs[index])
        return Symbol(self.names[index], value, size, info >> 4, info & 0xF, other & 0x3, shndx, self.dynamic)

    def __iter__(self) -> Iterator[Symbol]:
        for index in range(len(self.names)):
            yield self.symbol(index)

    def name_at(self, index: int) -> str | None:
        return self.names[index] if 0 <= index < len(self.names) else None


def _layout(image: ElfImage) -> tuple[struct.Struct, tuple[int, int, int, int, int, int]]:
    """The Elf_Sym struct and where (name, value, size, info, other, shndx) sit in it."""
    if image.elfclass == 64:
        return struct.Struct(image.endian + "IBBHQQ"), (0, 4, 5, 1, 2, 3)
    return struct.Struct(image.endian + "IIIBBH"), (0, 1, 2, 3, 4, 5)


def _columns(image: ElfImage, data: bytes) -> tuple[list[int], ...]:
    """(name offsets, values, sizes, infos, others, shndx) as plain lists.

    For native byte order the columns are strided memoryview casts (no per-entry tuple);
    otherwise a single struct.iter_unpack pass does the same job.
    """
    layout, (i_name, i_value, i_size, i_info, i_other, i_shndx) = _layout(image)
    data = data[: len(data) - len(data) % layout.size]
    native = (sys.byteorder == "little") == image.little_endian
    if native and image.elfclass == 64:
        view = memoryview(data)
        words32, words16, words64 = view.cast("I"), view.cast("H"), view.cast("Q")
        return (words32[0::6].tolist(), words64[1::3].tolist(), words64[2::3].tolist(),
                list(data[4::24]), list(data[5::24]), words16[3::12].tolist())
    columns = list(zip(*layout.iter_unpack(data))) or [()] * 6
    return tuple(list(columns[i]) for i in (i_name, i_value, i_size, i_info, i_other, i_shndx))


def read_symbol_table(image: ElfImage, section_type: int) -> SymbolTable:
    """Read .dynsym (SHT_DYNSYM) or .symtab (SHT_SYMTAB) in bulk; an absent table is empty."""
    section = next((s for s in image.sections if s.type == section_type), None)
    if section is None or section.size == 0:
        return SymbolTable([], [], section_type == SHT_DYNSYM)
    if not (0 < section.link < len(image.sections)):
        raise ValueError(f"symbol table {section.name} links to no string table")
    strings = image.section_bytes(image.sections[section.link])
    name_offsets, values, sizes, infos, others, shndxs = _columns(image, image.section_bytes(section))
    # SHN_XINDEX: the real section index lives in a parallel SHT_SYMTAB_SHNDX table.
    if SHN_XINDEX in shndxs:
        section_index = image.sections.index(section)
        extended = next((s for s in image.sections if s.type == SHT_SYMTAB_SHNDX and s.link == section_index), None)
        if extended is not None:
            real = struct.unpack(f"{image.endian}{extended.size // 4}I", image.section_bytes(extended))
            shndxs = [real[i] if x == SHN_XINDEX and i < len(real) else x for i, x in enumerate(shndxs)]
    find = strings.find
    # Slice first, decode once: names are almost always ASCII, so one join+split beats 500k decodes.
    raw = [strings[o:find(b"\0", o)] if o < len(strings) else b"" for o in name_offsets]
    names = b"\0".join(raw).decode("utf-8", "replace").split("\0") if raw else []
    if len(names) != len(raw):  # a name held a replacement-worthy NUL-free oddity; fall back per name
        names = [r.decode("utf-8", "replace") for r in raw]
    return SymbolTable(names, None, section_type == SHT_DYNSYM, columns=(values, sizes, infos, others, shndxs))


class Symbols:
    """Both tables of one file. Read .symtab too: static (file-local) objects and functions
    that never reach .dynsym, such as a static PyTypeObject, show up only there. .symtab is
    read on first use: libtorch_cpu.so carries 530k entries that most questions never need."""

    def __init__(self, image: ElfImage):
        self._image = image
        self.dynsym = read_symbol_table(image, SHT_DYNSYM)
        self._symtab: SymbolTable | None = None

    @classmethod
    def read(cls, image: ElfImage) -> "Symbols":
        return cls(image)

    @property
    def symtab(self) -> SymbolTable:
        if self._symtab is None:
            self._symtab = read_symbol_table(self._image, SHT_SYMTAB)
        return self._symtab

    def imports(self) -> set[str]:
        """Names the loader must find elsewhere (undefined in .dynsym)."""
        return {name for name, shndx in zip(self.dynsym.names, self.dynsym.shndxs)
                if shndx == SHN_UNDEF and name}

    def export_indices(self) -> list[int]:
        """Rows of .dynsym that exports() returns, found on the raw columns (no Symbol objects)."""
        table = self.dynsym
        return [i for i, name, info, other, shndx in zip(count(), table.names, table.infos, table.others, table.shndxs)
                if name and shndx != SHN_UNDEF and info >> 4 != STB_LOCAL and other & 0x3 in (STV_DEFAULT, STV_PROTECTED)
                and info & 0xF != STT_SECTION]

    def exports(self) -> list[Symbol]:
        # Filter on the raw columns first: libtorch_cpu.so has 75k rows, most of them imports.
        return [self.dynsym.symbol(i) for i in self.export_indices()]

    def defined_dynamic_with_prefix(self, prefix: str) -> list[Symbol]:
        """Defined .dynsym symbols whose name starts with prefix, in table order."""
        table = self.dynsym
        return [table.symbol(i) for i, name in enumerate(table.names)
                if name.startswith(prefix) and table.shndxs[i] != SHN_UNDEF]

    def gnu_unique(self) -> list[Symbol]:
        table = self.dynsym
        return [table.symbol(i) for i, info in enumerate(table.infos)
                if info >> 4 == STB_GNU_UNIQUE and table.names[i] and table.shndxs[i] != SHN_UNDEF]

    def find_defined(self, name: str) -> Symbol | None:
        for table in (self.dynsym, self.symtab):
            for index, candidate in enumerate(table.names):
                if candidate == name and table.rows[index][4] != SHN_UNDEF:
                    return table.symbol(index)
        return None

    def defined_with_prefix(self, prefix: str) -> list[Symbol]:
        seen: dict[str, Symbol] = {}
        for table in (self.dynsym, self.symtab):
            for index, name in enumerate(table.names):
                if name.startswith(prefix) and name not in seen and table.rows[index][4] != SHN_UNDEF:
                    seen[name] = table.symbol(index)
        return list(seen.values())

    def any_name_startswith(self, prefix: str) -> bool:
        return any(n.startswith(prefix) for t in (self.dynsym, self.symtab) for n in t.names)

    def symtab_name_at(self, address: int) -> str | None:
        """A defined symbol (either table) whose range covers address."""
        for table in (self.symtab, self.dynsym):
            for index, (value, size, _info, _other, shndx) in enumerate(table.rows):
                if shndx != SHN_UNDEF and value <= address < value + max(size, 1):
                    return table.names[index]
        return None
