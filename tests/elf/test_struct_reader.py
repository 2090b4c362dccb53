"""The struct reader and the C-level column code give pyelftools' answers, on real and damaged files.

ElfImage reads headers, section and program headers and .dynamic with `struct` and hands a
file to pyelftools wherever it cannot prove pyelftools would read it the same way; these tests
hold the two paths to the same result (a value, or the same exception), and the bulk symbol,
marker and registry helpers to the plain loops they replace.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from interpkit.analyzer.elf import facts as facts_module
from interpkit.analyzer.elf.closure import elf_identity
from interpkit.analyzer.elf.image import ElfImage
from interpkit.analyzer.elf.symbols import (SHN_UNDEF, STB_GLOBAL, STB_GNU_UNIQUE, STB_LOCAL,
                                            STT_SECTION, STV_DEFAULT, STV_PROTECTED, Symbols, _names)
from interpkit.analyzer.elf.torch_library import _kept_registerers

from tests.hardening.hardening_hostile import corruptions, truncation_points

FIXTURES = ["clean", "gnu_unique_cpp", "static_type", "pybind11_module", "multi_phase_no_slot",
            "single_phase_static", "initial_exec_tls", "rpath_absolute"]


def read(path: Path, *, struct_reader: bool):
    """(header, sections, segments, dynamic), each a value or (exception type, message)."""
    try:
        image = ElfImage.open(path)
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return ("open", type(exc).__name__, str(exc))
    with image:
        if not struct_reader:
            image._layout = None
        out = [(image.elfclass, image.little_endian, image.machine, image.elf_type)]
        for attr in ("sections", "segments", "dynamic"):
            try:
                out.append(getattr(image, attr))
            except Exception as exc:  # noqa: BLE001
                out.append((type(exc).__name__, str(exc)))
        return out


def used_struct_reader(path: Path) -> bool:
    with ElfImage.open(path) as image:
        image.sections, image.segments, image.dynamic
        return image._layout is not None


@pytest.mark.parametrize("fixture", FIXTURES)
def test_struct_reader_agrees_with_pyelftools_on_builds(built_fixtures, fixture):
    path = built_fixtures(fixture)
    assert read(path, struct_reader=True) == read(path, struct_reader=False)
    assert used_struct_reader(path)   # a plain build never needs pyelftools


@pytest.mark.torch
@pytest.mark.slow
def test_struct_reader_agrees_with_pyelftools_on_torch(torch_dir):
    paths = [p for p in sorted(torch_dir.rglob("*.so*")) if p.is_file() and not p.is_symlink()
             and p.read_bytes()[:4] == b"\x7fELF"]
    assert paths
    for path in paths:
        assert read(path, struct_reader=True) == read(path, struct_reader=False), path
        assert used_struct_reader(path), path


def damaged(data: bytes) -> dict[str, bytes]:
    out = dict(corruptions(data))
    out.update({f"cut{n}": data[:n] for n in truncation_points(len(data), 16)})
    rng = random.Random(16)
    for k in range(8):
        flipped = bytearray(data)
        for offset in range(rng.randint(16, 200), len(flipped), rng.randint(13, 400)):
            flipped[offset] ^= rng.randint(1, 255)
        out[f"flip{k}"] = bytes(flipped)
    return out


@pytest.mark.parametrize("fixture", ["clean", "gnu_unique_cpp", "pybind11_module"])
def test_damaged_files_fail_or_read_the_same_way(built_fixtures, fixture, tmp_path):
    """Header corruptions, truncations and flipped bytes: the same value or the same error either way."""
    for name, data in damaged(built_fixtures(fixture).read_bytes()).items():
        path = tmp_path / f"{name}.so"
        path.write_bytes(data)
        assert read(path, struct_reader=True) == read(path, struct_reader=False), name


@pytest.mark.parametrize("fixture", ["clean", "gnu_unique_cpp"])
def test_header_identity_matches_opening_the_file(built_fixtures, fixture, tmp_path):
    for name, data in {"orig": built_fixtures(fixture).read_bytes(), **damaged(built_fixtures(fixture).read_bytes()),
                       "empty": b"", "magic": b"\x7fELF", "text": b"not an ELF file at all"}.items():
        path = tmp_path / f"{name}.so"
        path.write_bytes(data)
        try:
            with ElfImage.open(path) as image:
                expected = (image.machine, image.elfclass)
        except Exception:  # noqa: BLE001
            expected = None
        assert elf_identity(str(path)) == expected, name


def sliced(strings: bytes, offsets: list[int]) -> list[str]:
    return [(strings[o:strings.find(b"\0", o)] if o < len(strings) else b"").decode("utf-8", "replace")
            for o in offsets]


@pytest.mark.parametrize("strings", [b"\0abc\0de\0", b"\0abc\0de", b"\0ab\xffc\0d\xe2\x82\0", b"\0ab\xffc\0de", b"",
                                     b"\0\0\0", b"x"])
def test_names_are_the_bytes_up_to_the_next_nul(strings):
    offsets = list(range(len(strings) + 3)) + [10**6]
    assert _names(strings, offsets) == sliced(strings, offsets)


@pytest.mark.parametrize("fixture", ["gnu_unique_cpp", "static_type", "pybind11_module", "multi_phase_no_slot"])
def test_column_filters_match_the_row_rules(built_fixtures, fixture):
    with ElfImage.open(built_fixtures(fixture)) as image:
        symbols = Symbols.read(image)
        rows = list(symbols.dynsym)
        exported = [s for s in rows if s.name and s.shndx != SHN_UNDEF and s.bind != STB_LOCAL
                    and s.visibility in (STV_DEFAULT, STV_PROTECTED) and s.type != STT_SECTION]
        assert symbols.exports() == exported
        names, weak = symbols.export_names()
        assert names == [s.name for s in exported if s.bind == STB_GLOBAL]
        assert weak == sum(1 for s in exported if s.bind != STB_GLOBAL)
        assert symbols.imports() == {s.name for s in rows if s.shndx == SHN_UNDEF and s.name}
        assert symbols.gnu_unique_names() == {s.name for s in rows if s.bind == STB_GNU_UNIQUE and s.name
                                               and s.shndx != SHN_UNDEF}
        for prefix in ("PyInit_", "__pyx_", "Py", "zzz_none_"):
            assert symbols.defined_dynamic_with_prefix(prefix) == [s for s in rows if s.name.startswith(prefix)
                                                                   and s.shndx != SHN_UNDEF]
            assert symbols.any_name_startswith(prefix) == any(s.name.startswith(prefix)
                                                              for t in (symbols.dynsym, symbols.symtab) for s in t)


@pytest.mark.parametrize("haystack", [
    b"",
    b"xx" + b"cython_" * 200 + b"__pyx_ __nb_internals",          # the shared anchor hit past the cap
    b"_internals" * 3 + b"__pybind11_internals_v4 __nb_internals nanobind",
    b"pyo3-0.20.1 PyO3 modules _cffi_backend cython_runtime _cython_3_0_10",
    b"__pybind11_internals_v",                                     # a prefix that ends the section
])
def test_marker_positions_match_bytes_find(haystack):
    prefixes = [p for _name, _pattern, group in facts_module._GENERATOR_MARKERS for p in group]
    for start, end in ((0, len(haystack)), (2, max(2, len(haystack) - 3))):
        first = facts_module._first_positions(haystack, start, end)
        assert first == {p: haystack.find(p, start, end) for p in prefixes}


@pytest.mark.parametrize("registries", [
    ("c10::C10FlagsRegistry", "c10::ThreadPoolRegistry"),
    ("c10::FooRegistry", "c10::FooRegistry1Registry"),    # one name a prefix of another: the regex decides
    ("c10::Flag_g_Registry", "c10::Registry"),
])
def test_kept_registerers_match_the_regex(registries):
    strtab = (b"\0g_C10FlagsRegistry\0g_ThreadPoolRegistry7\0g_FooRegistry1Registry2\0g_Flag_g_Registry0\0"
              b"g_Registry\0g_ThreadPoolRegistry")
    names = sorted({r.rpartition("::")[2] for r in registries})
    pattern = re.compile(rb"g_(" + b"|".join(re.escape(n.encode()) for n in names) + rb")[0-9]")
    assert _kept_registerers((strtab, 0, len(strtab)), registries) == {m.group(1).decode()
                                                                         for m in pattern.finditer(strtab)}


def strings_named_reference(blob: bytes) -> set[bytes]:
    """The finditer form _strings_named replaced, over the section's bytes alone."""
    identifiers = set()
    for match in re.finditer(rb"TORCH_LIBRARY(?:_IMPL|_FRAGMENT)?_(?:static_)?init_[A-Za-z0-9_]+", blob):
        start = match.start()
        if start >= 7 and blob[start - 7:start] == b"STABLE_":
            start -= 7
        digits = start
        while digits > 0 and 48 <= blob[digits - 1] <= 57:
            digits -= 1
        if digits < start:
            length = int(blob[digits:start])
            identifier = blob[start:start + length]
            if len(identifier) == length:
                identifiers.add(identifier)
        else:
            identifiers.add(blob[start:match.end()])
    return identifiers


@pytest.mark.parametrize("blob", [
    b"\0_ZL29TORCH_LIBRARY_init_torchvisionRN5torch7LibraryE\0TORCH_LIBRARY_IMPL_init_ops_CPU_3\0",
    b"36STABLE_TORCH_LIBRARY_FRAGMENT_init_myops_7xx\0TORCH_LIBRARYTORCH_LIBRARY_init_a\0",
    b"12TORCH_LIBRARY_init_abc",                        # digits at the very start of the table
    b"\0_ZL99TORCH_LIBRARY_init_runs_past_the_end",     # a length that runs past the table
])
def test_strings_named_matches_finditer(blob):
    from interpkit.analyzer.elf.torch_library import _parse_init_name, _strings_named

    for pad in (b"", b"9TORCH_LIBRARY_init_outside\0"):   # bytes before the section never count
        haystack = pad + blob + b"99"
        span = (haystack, len(pad), len(pad) + len(blob))
        expected = [r for r in (_parse_init_name(i.decode()) for i in sorted(strings_named_reference(blob))) if r]
        assert _strings_named(span) == expected


@pytest.mark.parametrize("names", [[], ["b", "a", "_end", "a", "_init", "z"], ["_end"], ["x"] * 5,
                                   ["_DYNAMIC", "_fini", "_edata", "__bss_start"], list("qwertyuiop")])
def test_sorted_exports_is_the_sorted_set_without_linker_markers(names):
    from interpkit.analyzer.elf.symbols import LINKER_SYMBOLS

    assert facts_module._sorted_exports(names) == tuple(sorted(set(names) - LINKER_SYMBOLS))


def test_facts_pickle_back_to_equal_facts(built_fixtures):
    import pickle

    facts = facts_module.build_facts(built_fixtures("gnu_unique_cpp"))
    back = pickle.loads(pickle.dumps(facts, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == facts and type(back.exports) is tuple and type(back.imports) is frozenset
    odd = facts_module.ElfFacts(**{**facts.__dict__, "exports": ("a\0b", "c"), "imports": frozenset()})
    assert pickle.loads(pickle.dumps(odd)) == odd
