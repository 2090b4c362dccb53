"""smaps parsing and attribution on real processes and real namespaces."""
from __future__ import annotations

import mmap
import os
import subprocess
import sys

import pytest

from interpkit.analyzer.memory.smaps import LoadedObject, attribute, read_rollup, read_smaps, total_of

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
    runtime = pytest.importorskip("interpkit.native.namespaces.runtime")
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
    """The kernel merges an object's .bss with an adjacent anonymous mapping into one smaps entry;
    attribution gives the object only the resident pages below its end (read from pagemap).

    Laid out by hand so it does not depend on where the loader puts things: an object "loaded"
    at the start of a PROT_NONE reservation, and one read-write mapping straddling its end.
    """
    import ctypes

    from interpkit.analyzer.memory.smaps import _load_span

    so = built_fixtures("bigstate")
    span_end = _load_span(str(so))[1]                     # ~40 MiB: where the fixture's .bss ends
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    private_anonymous, fixed, read_write = 0x02 | 0x20, 0x10, 0x1 | 0x2
    reserved = 48 * MIB
    base = libc.mmap(None, reserved, 0, private_anonymous, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value)
    try:
        straddling = base + 32 * MIB                    # [32 MiB, 48 MiB): crosses span_end
        assert libc.mmap(straddling, 16 * MIB, read_write, private_anonymous | fixed, -1, 0) == straddling
        touched_from = base + 34 * MIB                  # leave 2 MiB of the object's part untouched
        ctypes.memset(touched_from, 1, base + reserved - touched_from)
        mappings = read_smaps()
        merged = next(m for m in mappings if m.start == straddling)
        assert merged.end == base + reserved and merged.totals.private_dirty == 14 * MIB
        split = attribute(mappings, [LoadedObject(0, str(so), base)])
        owned = split.by_object[(0, str(so))]
        assert owned.private_dirty == owned.rss == span_end - 34 * MIB
        without = attribute([m for m in mappings if m is not merged], []).anonymous.private_dirty
        assert split.anonymous.private_dirty - without == base + reserved - (base + span_end)
        parts = [*split.by_interpreter.values(), split.host_objects, split.other_files, split.anonymous, split.special]
        assert sum(p.private_dirty for p in parts) == split.total.private_dirty
    finally:
        libc.munmap(base, reserved)
