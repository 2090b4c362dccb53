"""smaps parsing and attribution on real processes and real namespaces."""
from __future__ import annotations

import mmap
import os
import subprocess
import sys

import pytest

from analyzer.memory.smaps import LoadedObject, attribute, read_rollup, read_smaps, total_of

MIB = 1024 * 1024


def _idle_child():
    return subprocess.Popen([sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_smaps_adds_up_to_the_rollup_of_an_idle_process():
    child = _idle_child()
    try:
        assert child.stdout.readline().strip() == "ready"
        mappings = read_smaps(child.pid)
        rollup = read_rollup(child.pid)
    finally:
        child.stdin.close()
        child.wait()
    summed = total_of(mappings)
    assert len(mappings) > 10
    assert [m.start for m in mappings] == sorted(m.start for m in mappings)
    # Nothing runs in the child between the two reads: the per-mapping counters sum to the rollup.
    for field in ("rss", "private_dirty", "anonymous"):
        assert abs(getattr(summed, field) - getattr(rollup, field)) <= 64 * 1024, field
    assert abs(summed.pss - rollup.pss) <= 64 * 1024
    assert rollup.pss <= rollup.rss


def test_a_deleted_file_with_spaces_in_its_name(tmp_path):
    """A named mapping keeps its path (spaces too), loses " (deleted)", and counts what was written."""
    path = tmp_path / "a file with spaces.bin"
    size = 3 * MIB
    path.write_bytes(b"\0" * size)
    with open(path, "r+b") as fh:
        view = mmap.mmap(fh.fileno(), size, flags=mmap.MAP_PRIVATE)
    os.unlink(path)
    try:
        for offset in range(0, size, mmap.PAGESIZE):
            view[offset] = 1  # copy-on-write: every page becomes private and anonymous
        found = [m for m in read_smaps() if m.path == str(path)]
        assert len(found) == 1
        mapping = found[0]
        assert mapping.end - mapping.start == size and mapping.is_file
        assert mapping.totals.private_dirty == size
        assert mapping.totals.anonymous == size
    finally:
        view.close()


def test_anonymous_memory_lands_with_no_object():
    before = attribute(read_smaps(), []).anonymous.private_dirty
    block = bytearray(64 * MIB)
    block[::4096] = b"\1" * len(block[::4096])
    after = attribute(read_smaps(), []).anonymous.private_dirty
    del block
    assert 60 * MIB <= after - before <= 72 * MIB


def test_each_namespace_owns_its_own_copy_of_libpython():
    """The same file mapped by several namespaces is told apart by each link map's load base."""
    runtime = pytest.importorskip("native.runtime")
    with runtime.Runtime(2) as rt:
        objects = [LoadedObject(i, o.path, o.base) for i in range(2) for o in rt.namespace_libs(i)]
        mappings = read_smaps()
    split = attribute(mappings, objects)
    libpython = [o for o in objects if "libpython" in o.path]
    assert len(libpython) == 2 and libpython[0].base != libpython[1].base
    for index in range(2):
        owned = split.by_object[(index, libpython[index].path)]
        assert owned.rss > MIB and owned.private_dirty > 0
    # The dynamic loader is one object for all namespaces: the host's, not an interpreter's.
    loaders = [k for k in split.by_object if "ld-linux" in k[1]]
    assert loaders == []
    # Nothing is counted twice: the split adds up to the whole process.
    parts = [*split.by_interpreter.values(), split.host_objects, split.other_files, split.anonymous, split.special]
    assert sum(p.rss for p in parts) == split.total.rss == total_of(mappings).rss


def test_heap_merged_into_a_bss_mapping_is_split_off(built_fixtures):
    """An anonymous mapping placed right after an object's .bss merges with it into one smaps entry;
    the attribution still gives the object only its own pages (counted in pagemap)."""
    import ctypes
    import importlib.util

    so = built_fixtures("bigstate")
    spec = importlib.util.spec_from_file_location("bigstate", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # touches all 40 MiB of the fixture's arrays
    mappings = read_smaps()
    last_file = max(i for i, m in enumerate(mappings) if m.path == str(so))
    bss, following = mappings[last_file + 1], mappings[last_file + 2]
    assert bss.path is None and bss.start == mappings[last_file].end and bss.totals.private_dirty >= 31 * MIB
    size = min(8 * MIB, following.start - bss.end)
    if size < 64 * 1024:
        pytest.skip("no room right after the fixture's .bss for another mapping")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    prot_rw, private_anonymous_fixed_noreplace = 0x1 | 0x2, 0x02 | 0x20 | 0x100000
    address = libc.mmap(bss.end, size, prot_rw, private_anonymous_fixed_noreplace, -1, 0)
    if address != bss.end:
        pytest.skip("the kernel would not place a mapping right after the fixture's .bss")
    try:
        ctypes.memset(address, 1, size)
        mappings = read_smaps()
        merged = next(m for m in mappings if m.start == bss.start)
        assert merged.end == bss.end + size, "the kernel did not merge the two mappings; nothing to split"
        first = next(m for m in mappings if m.path == str(so))
        fixture = LoadedObject(0, str(so), first.start)  # linked at address 0: the first mapping is its base
        split = attribute(mappings, [fixture])
        owned = split.by_object[(0, str(so))].private_dirty
        # The fixture keeps its 40 MiB (and a few pages of its own), not the 8 MiB that merged into its .bss.
        assert 40 * MIB <= owned < 40 * MIB + 16 * 4096
        assert split.anonymous.private_dirty >= size
        parts = [*split.by_interpreter.values(), split.host_objects, split.other_files, split.anonymous, split.special]
        assert sum(p.private_dirty for p in parts) == split.total.private_dirty
    finally:
        libc.munmap(address, size)
