"""The static estimate: page-rounded ELF segments, checked against readelf's reading of the same headers."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from interpkit.core.errors import InputError
from interpkit.analyzer.memory.estimate import (
    BACKENDS,
    PAGE_SIZE,
    Role,
    collect_inputs,
    estimate_files,
    footprint,
    libpython_of,
    needed_closure,
)

_LOAD = re.compile(r"^\s*LOAD\s+0x\S+\s+(0x\S+)\s+0x\S+\s+(0x\S+)\s+(0x\S+)\s+([RWE ]{3})\s+0x")
_TLS = re.compile(r"^\s*TLS\s+0x\S+\s+0x\S+\s+0x\S+\s+0x\S+\s+(0x\S+)")
MIB = 1024 * 1024


def _readelf_relocated_bytes(path: Path) -> int:
    """Pages of writable file-backed segments that readelf lists relocation targets in (RELR too),
    plus the zero-filled tail page of a segment that has .bss."""
    text = subprocess.run(["readelf", "-lrW", str(path)], capture_output=True, text=True, check=True).stdout
    writable, pages = [], set()
    for line in text.splitlines():
        load = _LOAD.match(line)
        if load and "W" in load.group(4):
            vaddr, filesz, memsz = (int(load.group(i), 16) for i in (1, 2, 3))
            writable.append((vaddr // PAGE_SIZE, -(-(vaddr + filesz) // PAGE_SIZE)))
            if memsz > filesz and (vaddr + filesz) % PAGE_SIZE:
                pages.add((vaddr + filesz) // PAGE_SIZE)
        target = re.match(r"^([0-9a-f]{16})(\s|$)", line)
        if target:
            page = int(target.group(1), 16) // PAGE_SIZE
            if any(first <= page < end for first, end in writable):
                pages.add(page)
    return len(pages) * PAGE_SIZE


def _readelf_footprint(path: Path) -> dict[str, int]:
    """The same page arithmetic done on binutils' readelf output: an independent reading of the headers."""
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed")
    text = subprocess.run(["readelf", "-lW", str(path)], capture_output=True, text=True, check=True).stdout
    out = {"data": 0, "bss": 0, "text": 0, "tls": 0}
    for line in text.splitlines():
        load = _LOAD.match(line)
        if load:
            vaddr, filesz, memsz = (int(load.group(i), 16) for i in (1, 2, 3))
            first = vaddr // PAGE_SIZE * PAGE_SIZE
            end = -(-(vaddr + memsz) // PAGE_SIZE) * PAGE_SIZE
            if "W" in load.group(4):
                file_end = -(-(vaddr + filesz) // PAGE_SIZE) * PAGE_SIZE
                out["data"] += file_end - first
                out["bss"] += end - file_end
            else:
                out["text"] += end - first
        tls = _TLS.match(line)
        if tls:
            out["tls"] = int(tls.group(1), 16)
    return out


def test_libpython_footprint_matches_readelf():
    libpython = libpython_of()
    ours = footprint(libpython, Role.LIBPYTHON)
    expected = _readelf_footprint(libpython)
    assert (ours.data_bytes, ours.bss_bytes, ours.text_bytes, ours.tls_bytes) == \
        (expected["data"], expected["bss"], expected["text"], expected["tls"])
    # A real libpython has relocated data, and more text than data.
    assert ours.data_bytes > 0 and ours.text_bytes > 2 * ours.data_bytes


@pytest.mark.parametrize("which", ["libpython", "libc"])
def test_relocated_pages_match_readelf(which):
    """The floor of the estimate: pages the loader writes, from REL/RELA and (libc) packed RELR tables."""
    closure, _missing = needed_closure([libpython_of()])
    path = libpython_of() if which == "libpython" else next(p for p in closure if p.name.startswith("libc.so"))
    ours = footprint(path)
    assert 0 < ours.relocated_bytes <= ours.data_bytes
    assert ours.relocated_bytes == _readelf_relocated_bytes(path)


def test_libc_tls_is_counted():
    closure, _missing = needed_closure([libpython_of()])
    libc = next(p for p in closure if p.name.startswith("libc.so"))
    assert footprint(libc).tls_bytes == _readelf_footprint(libc)["tls"] > 0


def test_bigstate_footprint_is_its_arrays(built_fixtures):
    """32 MiB .bss + 8 MiB .data: the estimate sees both, rounded to pages, and nothing much else."""
    so = built_fixtures("bigstate")
    ours = footprint(so, Role.EXTENSION)
    assert 32 * MIB <= ours.bss_bytes < 32 * MIB + 4 * PAGE_SIZE
    assert 8 * MIB <= ours.data_bytes < 8 * MIB + 4 * PAGE_SIZE
    expected = _readelf_footprint(so)
    assert (ours.data_bytes, ours.bss_bytes, ours.text_bytes) == (expected["data"], expected["bss"], expected["text"])


def test_closure_of_libpython_reaches_libc_and_the_loader():
    estimate = estimate_files([])
    roles = {o.path.name: o.role for o in estimate.objects}
    assert roles[libpython_of().name] is Role.LIBPYTHON
    assert any(name.startswith("libc.so") for name in roles)
    loaders = [name for name, role in roles.items() if role is Role.LOADER]
    assert loaders and loaders[0].startswith("ld-linux")


def test_backends_split_private_and_shared(built_fixtures):
    so = built_fixtures("bigstate")
    estimate = estimate_files([so])
    by_name = {b: estimate.backend(b) for b in BACKENDS}
    fixture = footprint(so)
    loader = next(o for o in estimate.objects if o.role is Role.LOADER)
    writable = sum(o.writable_bytes + o.tls_bytes for o in estimate.objects)
    # namespaces: every writable page except the one shared loader's, once per interpreter.
    assert by_name["namespaces"].private_per_interpreter == writable - loader.writable_bytes
    assert by_name["processes"].private_per_interpreter == writable
    # subinterpreters share the arrays: only thread-local blocks are per interpreter.
    assert by_name["subinterpreters"].private_per_interpreter == sum(o.tls_bytes for o in estimate.objects)
    # copies: the copied fixture's text counts too, system libraries do not.
    assert by_name["copies"].private_per_interpreter >= fixture.writable_bytes + fixture.text_bytes
    for name, backend in by_name.items():
        total = sum(o.writable_bytes + o.text_bytes for o in estimate.objects)
        assert backend.total(1) >= total - loader.tls_bytes, name
        assert backend.total(3) == backend.shared + 3 * backend.private_per_interpreter


def test_bad_inputs_are_one_line_errors(tmp_path):
    files = collect_inputs([], ["json"])  # pure Python: only libpython carries it
    assert files == []
    with pytest.raises(InputError, match="cannot find module"):
        collect_inputs([], ["no_such_module_for_interpkit"])
    with pytest.raises(InputError, match="no such file"):
        collect_inputs([tmp_path / "missing.so"], [])
    text = tmp_path / "notes.so"
    text.write_text("not an ELF file")
    with pytest.raises(InputError, match="not an ELF file"):
        collect_inputs([text], [])


def test_imports_are_followed_to_extension_files(built_fixtures, tmp_path):
    """A model file's imports lead, without running anything, to the extensions it would load."""
    so = built_fixtures("bigstate")
    (tmp_path / so.name).write_bytes(so.read_bytes())
    model = tmp_path / "model.py"
    model.write_text("import math\nimport bigstate\n\ndef forward():\n    return bigstate.checksum()\n")
    names = {f.name for f in collect_inputs([model], [])}
    assert so.name in names
    assert any(name.startswith("math.") for name in names)  # a stdlib extension module


def test_torch_extensions_found_statically():
    pytest.importorskip("torch.version")  # the package exists; find_spec does not import it
    files = collect_inputs([], ["torch"], follow_imports=False)
    assert any(f.name.startswith("_C.") for f in files)
    names = {o.path.name for o in estimate_files(files).objects}
    assert "libtorch_cpu.so" in names
