"""Bulk symbol unpacking agrees with pyelftools, symbol by symbol, on real binaries."""
from __future__ import annotations

import pytest
from elftools.elf.elffile import ELFFile

from interpkit.analyzer.elf.image import ElfImage
from interpkit.analyzer.elf.symbols import STB_GNU_UNIQUE, Symbols

_BIND = {"STB_LOCAL": 0, "STB_GLOBAL": 1, "STB_WEAK": 2, "STB_LOOS": STB_GNU_UNIQUE, "STB_GNU_UNIQUE": STB_GNU_UNIQUE}


def reference(path, section_name):
    with open(path, "rb") as fh:
        section = ELFFile(fh).get_section_by_name(section_name)
        if section is None:
            return []
        return [(s.name, s["st_value"], s["st_size"], _BIND.get(s["st_info"]["bind"], -1),
                 s["st_shndx"] if isinstance(s["st_shndx"], int) else s["st_shndx"])
                for s in section.iter_symbols()]


def ours(table):
    return [(s.name, s.value, s.size, s.bind, s.shndx) for s in table]


def normalise(rows):
    named = {"SHN_UNDEF": 0, "SHN_ABS": 0xFFF1, "SHN_COMMON": 0xFFF2}
    return [(n, v, sz, b, named.get(x, x)) for n, v, sz, b, x in rows]


@pytest.mark.parametrize("fixture", ["gnu_unique_cpp", "static_type", "pybind11_module"])
def test_dynsym_and_symtab_match_pyelftools(built_fixtures, fixture):
    path = built_fixtures(fixture)
    with ElfImage.open(path) as image:
        symbols = Symbols.read(image)
        assert ours(symbols.dynsym) == normalise(reference(path, ".dynsym"))
        assert ours(symbols.symtab) == normalise(reference(path, ".symtab"))


def test_gnu_unique_binding_is_read(built_fixtures):
    with ElfImage.open(built_fixtures("gnu_unique_cpp")) as image:
        names = [s.name for s in Symbols.read(image).gnu_unique()]
    assert names and all("call_counter" in n for n in names)


def test_symtab_sees_static_objects_dynsym_does_not(built_fixtures):
    with ElfImage.open(built_fixtures("static_type")) as image:
        symbols = Symbols.read(image)
        assert "Point_Type" not in symbols.dynsym.names
        assert symbols.find_defined("Point_Type") is not None


@pytest.mark.torch
@pytest.mark.slow
def test_libtorch_cpu_dynsym_names_match_pyelftools(torch_dir):
    path = torch_dir / "lib" / "libtorch_cpu.so"
    with ElfImage.open(path) as image:
        names = Symbols.read(image).dynsym.names
    with open(path, "rb") as fh:
        expected = [s.name for s in ELFFile(fh).get_section_by_name(".dynsym").iter_symbols()]
    assert names == expected and len(names) > 10_000
