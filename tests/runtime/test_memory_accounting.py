"""docs/facts.md fact 6: RSS counts a file's pages once per namespace; Pss and attribution do not."""
from __future__ import annotations

import ctypes
from pathlib import Path

from interpkit.analyzer.memory.smaps import Mapping, read_smaps


def _copies(libpython: Path) -> dict[int, list[Mapping]]:
    """libpython's mappings grouped by copy, keyed by load base.

    A copy's first segment (file offset 0, virtual address 0) starts at its load base; the
    process may hold more copies than runtime2's (namespaces are never unmapped).
    """
    copies: dict[int, list[Mapping]] = {}
    base = None
    for mapping in read_smaps():
        if not mapping.path or Path(mapping.path).name != libpython.name:
            continue
        if mapping.offset == 0:
            base = mapping.start
        copies.setdefault(base, []).append(mapping)
    return copies


def _host_base(copies: dict[int, list[Mapping]]) -> int:
    address = ctypes.cast(ctypes.pythonapi.Py_IsInitialized, ctypes.c_void_p).value
    return next(base for base, maps in copies.items()
                if any(m.start <= address < m.end for m in maps))


def _runtime_bases(runtime2, libpython: Path) -> list[int]:
    return [next(obj.base for obj in runtime2.namespace_libs(index)
                 if Path(obj.path).name == libpython.name) for index in range(2)]


def test_rss_over_counts_libpython_mapped_in_three_namespaces(runtime2, libpython):
    runtime2.call_all("builtins:eval", "sum(range(1000))")
    copies = _copies(libpython)
    chosen = [_host_base(copies), *_runtime_bases(runtime2, libpython)]
    text = [m for base in chosen for m in copies[base] if "x" in m.perms]
    assert len(text) == 3
    rss = sum(m.totals.rss for m in text)
    pss = sum(m.totals.pss for m in text)
    # Pss divides each page by the number of mappings of it, within this process too, so
    # three copies of the same text count about once.
    assert rss >= 2 * pss > 0, (rss, pss)


def test_mappings_are_attributed_to_their_interpreter_by_load_base(runtime2, libpython):
    copies = _copies(libpython)
    bases = _runtime_bases(runtime2, libpython)
    assert all(base in copies for base in bases)
    assert len(set(bases)) == 2
    assert _host_base(copies) not in bases
    # Every mapping of a copy lies above its base: attribution by (path, base) is unique.
    for base in bases:
        assert all(m.start >= base for m in copies[base])
