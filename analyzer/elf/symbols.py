"""Bulk symbol-table unpacking: one read per table, one struct.iter_unpack, names sliced from the string table."""
from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from functools import cached_property
from itertools import compress, repeat
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

    def __init__(self, names: list[str] | None, rows: list[tuple[int, int, int, int, int]] | None, dynamic: bool,
                 columns: tuple[list[int], ...] | None = None, *, strings: bytes | None = None,
                 offsets: list[int] | None = None):
        # rows: (value, size, info, other, shndx); columns: the same five as lists, rows built on demand.
        # names None: sliced from strings at offsets when first asked for (a library's facts need
        # only the rows the filters keep: libtorch_cpu.so's 17k weak exports are never named).
        if names is not None:
            self.names = names
        self.dynamic = dynamic
        self._later: dict = {}
        self.strings = strings   # the string table the names were sliced from, when read from a file
        self._offsets = offsets
        if rows is not None:
            self.rows = rows
        if columns is not None:
            values, sizes, infos, others, self.shndxs = columns
            # st_info and st_other may come as bytes (one per row, as in the file): the filters
            # below translate them whole, and lists are made only for callers that index them.
            for name, column in (("infos", infos), ("others", others)):
                setattr(self, name + "_bytes" if isinstance(column, bytes) else name, column)
            # st_value and st_size may come as thunks: most libraries never need them (only the
            # init functions of extensions and their data do), and 150k 64-bit ints cost.
            for name, column in (("values", values), ("sizes", sizes)):
                if callable(column):
                    self._later[name] = column
                else:
                    setattr(self, name, column)

    @cached_property
    def names(self) -> list[str]:
        return _names(self.strings, self._offsets, self._text)

    @cached_property
    def _text(self) -> str | None:
        """The string table decoded once for every slicing of it, where it is ASCII (real ones are;
        the decoder checks that as it goes, a pass isascii() would make again)."""
        if self.strings is None:
            return None
        try:
            return self.strings.decode("ascii")
        except UnicodeDecodeError:
            return None

    def names_where(self, flags: bytes) -> list[str]:
        """list(compress(self.names, flags)), slicing only those names where none are made yet."""
        if "names" in self.__dict__ or self._offsets is None:
            return list(compress(self.names, flags))
        return _names(self.strings, list(compress(self._offsets, flags)), self._text)

    def named_count(self, flags: bytes) -> int:
        """How many rows kept by flags have a name (see named_bytes), from their first bytes."""
        offsets, strings = self._offsets, self.strings
        if "names" in self.__dict__ or offsets is None:
            return sum(map(bool, compress(self.names, flags)))
        kept = list(compress(offsets, flags))
        if kept and max(kept) >= len(strings) - 1:
            return sum(map(bool, _names(strings, kept, self._text)))
        return len(kept) - bytes(map(strings.__getitem__, kept)).count(0)

    @cached_property
    def named_bytes(self) -> bytes:
        """One byte per row, 1 where the row's name is not empty. A name is empty exactly where
        its offset is the table's last byte or past it, or holds a NUL (_names); offsets past the
        table (a damaged file) are left to the names themselves."""
        offsets, strings = self._offsets, self.strings
        if "names" in self.__dict__ or offsets is None or not offsets or max(offsets) >= len(strings):
            return bytes(map(bool, self.names))
        table = strings[:-1] + b"\0"
        return bytes(map(table.__getitem__, offsets)).translate(_NONZERO)

    @cached_property
    def rows(self) -> list[tuple[int, int, int, int, int]]:
        # Zipping 75k tuples costs more than most questions do: built only for callers that want rows.
        return list(zip(self.values, self.sizes, self.infos, self.others, self.shndxs))

    # Single columns: filters over one column skip unpacking a row tuple each.
    @cached_property
    def values(self) -> list[int]:
        later = self._later.pop("values", None)
        return later() if later is not None else [row[0] for row in self.rows]

    @cached_property
    def sizes(self) -> list[int]:
        later = self._later.pop("sizes", None)
        return later() if later is not None else [row[1] for row in self.rows]

    @cached_property
    def infos(self) -> list[int]:
        if "infos_bytes" in self.__dict__:
            return list(self.infos_bytes)
        return [row[2] for row in self.rows]

    @cached_property
    def others(self) -> list[int]:
        if "others_bytes" in self.__dict__:
            return list(self.others_bytes)
        return [row[3] for row in self.rows]

    @cached_property
    def infos_bytes(self) -> bytes:
        return bytes(self.infos)

    @cached_property
    def others_bytes(self) -> bytes:
        return bytes(self.others)

    @cached_property
    def defined_bytes(self) -> bytes:
        """One byte per row: 1 where st_shndx is not SHN_UNDEF."""
        return bytes(map(bool, self.shndxs))

    @cached_property
    def shndxs(self) -> list[int]:
        return [row[4] for row in self.rows]

    def __len__(self) -> int:
        return len(self.names) if self._offsets is None else len(self._offsets)

    def symbol(self, index: int) -> Symbol:
        value, size, info, other, shndx = (self.values[index], self.sizes[index], self.infos[index],
                                           self.others[index], self.shndxs[index])
        return Symbol(self.names[index], value, size, info >> 4, info & 0xF, other & 0x3, shndx, self.dynamic)

    def __iter__(self) -> Iterator[Symbol]:
        for index in range(len(self.names)):
            yield self.symbol(index)

    def name_at(self, index: int) -> str | None:
        return self.names[index] if 0 <= index < len(self.names) else None


def _may_hold(table: SymbolTable, prefix: str) -> bool:
    """False only when no name of the table can start with the (ASCII) prefix: names are slices
    of the string table, and decoding never turns other bytes into ASCII."""
    strings = table.strings
    return strings is None or prefix.encode("ascii") in strings


# Byte tables for bytes.translate: 1 where the st_info / st_other byte passes the test.
_EXPORT_INFO = bytes(int(b >> 4 != STB_LOCAL and b & 0xF != STT_SECTION) for b in range(256))
_EXPORT_OTHER = bytes(int(b & 0x3 in (STV_DEFAULT, STV_PROTECTED)) for b in range(256))
_GLOBAL_INFO = bytes(int(b >> 4 == STB_GLOBAL) for b in range(256))
_UNIQUE_INFO = bytes(int(b >> 4 == STB_GNU_UNIQUE) for b in range(256))
_FLIP = bytes([1, 0]) + bytes(254)   # a 0/1 flag column's complement


def _layout(image: ElfImage) -> tuple[struct.Struct, tuple[int, int, int, int, int, int]]:
    """The Elf_Sym struct and where (name, value, size, info, other, shndx) sit in it."""
    if image.elfclass == 64:
        return struct.Struct(image.endian + "IBBHQQ"), (0, 4, 5, 1, 2, 3)
    return struct.Struct(image.endian + "IIIBBH"), (0, 1, 2, 3, 4, 5)


def _columns(image: ElfImage, data: bytes) -> tuple:
    """(name offsets, values, sizes, infos, others, shndx) as plain lists (values and sizes
    may be thunks that make theirs).

    For native byte order the columns are strided memoryview casts (no per-entry tuple), and
    infos and others stay the bytes they are in the file (ELF64: one byte each per entry);
    otherwise a single struct.iter_unpack pass does the same job.
    """
    layout, (i_name, i_value, i_size, i_info, i_other, i_shndx) = _layout(image)
    data = data[: len(data) - len(data) % layout.size]
    native = (sys.byteorder == "little") == image.little_endian
    if native and image.elfclass == 64:
        view = memoryview(data)
        words32, words16, words64 = view.cast("I"), view.cast("H"), view.cast("Q")
        return (words32[0::6].tolist(), lambda: words64[1::3].tolist(), lambda: words64[2::3].tolist(),
                data[4::24], data[5::24], words16[3::12].tolist())
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
    data = image.section_bytes(section)
    name_offsets, values, sizes, infos, others, shndxs = _columns(image, data)
    defined = None
    # SHN_XINDEX: the real section index lives in a parallel SHT_SYMTAB_SHNDX table.
    if SHN_XINDEX in shndxs:
        section_index = image.sections.index(section)
        extended = next((s for s in image.sections if s.type == SHT_SYMTAB_SHNDX and s.link == section_index), None)
        if extended is not None:
            real = struct.unpack(f"{image.endian}{extended.size // 4}I", image.section_bytes(extended))
            shndxs = [real[i] if x == SHN_XINDEX and i < len(real) else x for i, x in enumerate(shndxs)]
    elif isinstance(infos, bytes):   # the native ELF64 layout (_columns): st_shndx is bytes 6-7 of each 24
        defined = _nonzero_pairs(data[6::24], data[7::24], len(shndxs))
    table = SymbolTable(None, None, section_type == SHT_DYNSYM, columns=(values, sizes, infos, others, shndxs),
                        strings=strings, offsets=name_offsets)
    if defined is not None:
        table.defined_bytes = defined
    return table


_NONZERO = bytes([0]) + bytes([1]) * 255


def _nonzero_pairs(low: bytes, high: bytes, rows: int) -> bytes:
    """One byte per row, 1 where the 16-bit value made of low and high bytes is not 0 (C loops only)."""
    if not rows:
        return b""
    either = int.from_bytes(low[:rows], "little") | int.from_bytes(high[:rows], "little")
    return either.to_bytes(rows, "little").translate(_NONZERO)


def _names(strings: bytes, offsets: list[int], text: str | None = None) -> list[str]:
    """The name at each offset: the bytes up to the next NUL (or up to the last byte of a table
    that does not end in one; nothing at or past the end), decoded as UTF-8 with replacement.

    The loops are C's own (map over str.find and slices, no bytecode per symbol): slicing 75k
    names one by one in a comprehension was an eighth of the torch scan. An ASCII table (all
    real ones) is decoded once and sliced as text; otherwise the bytes are sliced and decoded
    together, one NUL-joined decode, per name only if that went wrong. text: the table decoded
    as ASCII, where the caller has it.
    """
    if text is not None or strings.isascii():
        text = strings.decode("ascii") if text is None else text
        return list(map(text.__getitem__, map(slice, offsets, map(text.find, repeat("\0"), offsets))))
    raw = list(map(strings.__getitem__, map(slice, offsets, map(strings.find, repeat(b"\0"), offsets))))
    names = b"\0".join(raw).decode("utf-8", "replace").split("\0") if raw else []
    if len(names) != len(raw):  # a name held a replacement-worthy NUL-free oddity; fall back per name
        names = [r.decode("utf-8", "replace") for r in raw]
    return names


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
        table = self.dynsym
        names = set(table.names_where(table.defined_bytes.translate(_FLIP)))
        names.discard("")
        return names

    def _export_flags(self, named: bool = True) -> bytes:
        """One byte per .dynsym row, 1 where exports() keeps the row: named, defined, not local,
        default or protected visibility, not a section symbol (named=False: whether named or not).
        Built with C loops only (bytes.translate over the info/other columns, a bitwise and of the
        columns)."""
        table = self.dynsym
        n = len(table)
        if not n:
            return b""
        columns = ((table.named_bytes,) if named else ()) + (
            table.defined_bytes, table.infos_bytes.translate(_EXPORT_INFO), table.others_bytes.translate(_EXPORT_OTHER))
        combined = -1
        for column in columns:
            combined &= int.from_bytes(column, "little")
        return combined.to_bytes(n, "little")

    def export_indices(self) -> list[int]:
        """Rows of .dynsym that exports() returns, found on the raw columns (no Symbol objects)."""
        return list(compress(range(len(self.dynsym)), self._export_flags()))

    def export_names(self) -> tuple[list[str], int]:
        """(names of the STB_GLOBAL rows of exports(), in table order; how many are not STB_GLOBAL)."""
        table = self.dynsym
        # Named or not, first: naming every row would touch the whole string table once more
        # (75k rows in libtorch_cpu.so); the few unnamed ones are dropped from what is named.
        flags = self._export_flags(named=False)
        if not flags:
            return [], 0
        rows = int.from_bytes(flags, "little")
        global_rows = rows & int.from_bytes(table.infos_bytes.translate(_GLOBAL_INFO), "little")
        names = table.names_where(global_rows.to_bytes(len(flags), "little"))
        if "" in names:
            names = [name for name in names if name]
        return names, table.named_count((rows & ~global_rows).to_bytes(len(flags), "little"))

    def exports(self) -> list[Symbol]:
        # Filter on the raw columns first: libtorch_cpu.so has 75k rows, most of them imports.
        return [self.dynsym.symbol(i) for i in self.export_indices()]

    def defined_dynamic_with_prefix(self, prefix: str) -> list[Symbol]:
        """Defined .dynsym symbols whose name starts with prefix, in table order."""
        table = self.dynsym
        if not _may_hold(table, prefix):
            return []
        return [table.symbol(i) for i, name in enumerate(table.names)
                if name.startswith(prefix) and table.shndxs[i] != SHN_UNDEF]

    def gnu_unique(self) -> list[Symbol]:
        table = self.dynsym
        return [table.symbol(i) for i, info in enumerate(table.infos)
                if info >> 4 == STB_GNU_UNIQUE and table.names[i] and table.shndxs[i] != SHN_UNDEF]

    def gnu_unique_names(self) -> set[str]:
        """Names of gnu_unique(), from the columns."""
        table = self.dynsym
        if not len(table):
            return set()
        rows = table.infos_bytes.translate(_UNIQUE_INFO)
        if 1 not in rows:
            return set()
        return {name for name, shndx in zip(table.names_where(rows), compress(table.shndxs, rows))
                if name and shndx != SHN_UNDEF}

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
        if _may_hold(self.dynsym, prefix) and any(n.startswith(prefix) for n in self.dynsym.names):
            return True
        if self._symtab is None and not self._symtab_strings_hold(prefix):
            return False   # .symtab's names are slices of its string table: no need to read 500k rows
        return any(n.startswith(prefix) for n in self.symtab.names)

    def _symtab_strings_hold(self, prefix: str) -> bool:
        section = next((s for s in self._image.sections if s.type == SHT_SYMTAB), None)
        image = self._image
        if (section is None or section.size == 0 or not (0 < section.link < len(image.sections))
                or section.offset + section.size > image.file_size
                or any(s.type == SHT_SYMTAB_SHNDX for s in image.sections)):
            return True   # read_symbol_table decides: an empty table, or the error reading it raises
        return prefix.encode("ascii") in image.section_bytes(image.sections[section.link])

    def symtab_name_at(self, address: int) -> str | None:
        """A defined symbol (either table) whose range covers address."""
        for table in (self.symtab, self.dynsym):
            for index, (value, size, _info, _other, shndx) in enumerate(table.rows):
                if shndx != SHN_UNDEF and value <= address < value + max(size, 1):
                    return table.names[index]
        return None
