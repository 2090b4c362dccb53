"""The off-the-GIL searches and the column forms of relocations and symbol flags give the answers
of the plain code they replace: bytes.find, one Relocation per entry, section_at, a loop per row."""
from __future__ import annotations

import mmap
import struct

import pytest

from interpkit.analyzer.elf import facts as facts_module, modinit, search
from interpkit.analyzer.elf.image import SHT_DYNSYM, SHT_REL, SHT_RELA, ElfImage
from interpkit.analyzer.elf.symbols import Symbols
from interpkit.analyzer.plumbing.workers import Background

from tests.elf.test_struct_reader import damaged

HAYSTACKS = [b"", b"a", b"abcabcab", b"\0pyo3-0.1\0pyo3-" + b"x" * 3000 + b"nanobind\0", b"g_A1g_A" * 50]
NEEDLES = [b"a", b"ab", b"cab", b"pyo3-", b"nanobind", b"g_A1", b"zz", b"x" * 2999, b"abcabcabc"]


def ranges(size: int):
    yield from ((0, size), (1, size), (0, size - 1), (3, 5), (size, size), (size + 4, size + 9), (2, size + 100),
                (5, 2), (0, 0))


@pytest.mark.parametrize("haystack", HAYSTACKS)
@pytest.mark.parametrize("libc", [True, False])
def test_finder_finds_what_bytes_find_finds(haystack, libc, monkeypatch, tmp_path):
    if not libc:
        monkeypatch.setattr(search, "_libc", None)
    path = tmp_path / "hay"
    path.write_bytes(haystack or b"-")
    with open(path, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        for buffer in (haystack, mapped if haystack else b""):
            with search.Finder(buffer) as finder:
                for needle in NEEDLES:
                    for start, end in ranges(len(buffer)):
                        if start >= 0:
                            assert finder.find(needle, start, end) == buffer.find(needle, start, end), \
                                (needle, start, end)
            assert search.first_positions(buffer, 0, len(buffer), NEEDLES) == {n: buffer.find(n) for n in NEEDLES}
    finally:
        mapped.close()   # the Finder let go of it: closing does not raise BufferError


def test_pending_gives_the_value_or_the_error():
    assert Background(lambda: 42).result() == 42

    def broken():
        raise ValueError("section runs past the end of the file")

    pending = Background(broken)
    pending.wait()
    with pytest.raises(ValueError, match="past the end"):
        pending.result()


def outcome(path):
    try:
        return facts_module.build_facts(path)
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("fixture", ["pybind11_module", "gnu_unique_cpp", "static_type"])
def test_background_searches_give_the_same_facts_or_error(built_fixtures, fixture, tmp_path, monkeypatch):
    """Every section searched on the second thread (threshold 0) against every one in place."""
    files = {"orig": built_fixtures(fixture).read_bytes(), **damaged(built_fixtures(fixture).read_bytes())}
    for name, data in files.items():
        path = tmp_path / f"{name}.so"
        path.write_bytes(data)
        monkeypatch.setattr(search, "BACKGROUND_BYTES", 1 << 60)
        in_place = outcome(path)
        monkeypatch.setattr(search, "BACKGROUND_BYTES", 0)
        assert outcome(path) == in_place, name


def relocations_reference(image: ElfImage) -> list[tuple[int, int, int, int]]:
    """One struct unpack per entry, as ElfImage.relocations read them before the columns."""
    out = []
    dynsym = next((i for i, s in enumerate(image.sections) if s.type == SHT_DYNSYM), None)
    for section in image.sections:
        if section.type not in (SHT_RELA, SHT_REL) or section.size == 0 or section.link not in (0, dynsym):
            continue
        rela = section.type == SHT_RELA
        layout = struct.Struct(image.endian + ("QQq" if rela else "QQ"))
        data = image.section_bytes(section)
        for entry in layout.iter_unpack(data[: len(data) - len(data) % layout.size]):
            addend = entry[2] if rela else (image.read_ptr_raw(entry[0]) or 0)
            out.append((entry[0], entry[1] & 0xFFFFFFFF, entry[1] >> 32, addend))
    return out


@pytest.mark.parametrize("fixture", ["clean", "pybind11_module", "gnu_unique_cpp", "multi_phase_no_slot",
                                     "single_phase_static"])
def test_relocation_columns_and_lookups_match_the_plain_loops(built_fixtures, fixture):
    with ElfImage.open(built_fixtures(fixture)) as image:
        reference = relocations_reference(image)
        assert [(r.offset, r.type, r.symbol_index, r.addend) for r in image.relocations] == reference
        by_address = {r[0]: r for r in reference}
        for address in [*by_address, 0, 1, max(by_address, default=0) + 8]:
            found = image.relocation_of(address)
            assert (found and (found.offset, found.type, found.symbol_index, found.addend)) == by_address.get(address)
        symbols = Symbols.read(image)
        slots = {r.offset: symbols.dynsym.name_at(r.symbol_index) for r in image.relocations
                 if image.is_symbol_slot(r) and r.symbol_index}
        assert modinit._got_slot_names(image, symbols) == slots
        writable = modinit._writable_at(image)
        edges = {a for s in image.sections for a in (s.addr - 1, s.addr, s.addr + s.size - 1, s.addr + s.size)}
        for address in sorted(edges | {r[0] - 40 for r in reference} | {-8}):
            section = image.section_at(address)
            assert writable(address) == bool(section is not None and section.writable), address


@pytest.mark.parametrize("fixture", ["gnu_unique_cpp", "static_type", "pybind11_module"])
def test_byte_columns_match_the_lists(built_fixtures, fixture):
    with ElfImage.open(built_fixtures(fixture)) as image:
        symbols = Symbols.read(image)
        for table in (symbols.dynsym, symbols.symtab):
            assert isinstance(table.infos_bytes, bytes) and list(table.infos_bytes) == table.infos
            assert list(table.others_bytes) == table.others
            assert table.defined_bytes == bytes(map(bool, table.shndxs))


@pytest.mark.parametrize("strings", [b"\0abc\0de\0", b"\0abc\0de", b"\0ab\xffc\0d\xe2\x82\0", b"x", b"\0\0"])
def test_names_made_on_demand_are_the_names(strings):
    from interpkit.analyzer.elf.symbols import SymbolTable, _names

    for offsets in (list(range(len(strings))), list(range(len(strings) + 3)) + [10**6]):
        lazy = SymbolTable(None, [], True, strings=strings, offsets=offsets)
        names = _names(strings, offsets)
        assert lazy.named_bytes == bytes(map(bool, names)) and len(lazy) == len(names)
        flags = bytes(i % 3 == 0 for i in range(len(offsets)))
        assert lazy.names_where(flags) == [n for n, keep in zip(names, flags) if keep]
        assert lazy.names == names and lazy.names_where(flags) == [n for n, keep in zip(names, flags) if keep]
        assert SymbolTable(None, [], True, strings=strings, offsets=offsets).named_count(flags) == \
            sum(1 for n, keep in zip(names, flags) if keep and n)


def test_pending_without_a_thread_runs_in_place(monkeypatch):
    import threading

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert Background(lambda: "done").result() == "done"
