"""DESIGN.md fact 6: RSS counts a file's pages once per namespace; Pss and attribution do not."""
from __future__ import annotations

from pathlib import Path

from analyzer.memory.smaps import read_smaps


def test_rss_over_counts_libpython_mapped_in_three_namespaces(runtime2, libpython):
    # The host plus two namespaces map the same libpython file three times.
    runtime2.call_all("builtins:eval", "sum(range(1000))")
    mappings = [m for m in read_smaps() if m.path and Path(m.path).name == libpython.name]
    text = [m for m in mappings if "x" in m.perms]
    assert len(text) == 3
    rss = sum(m.totals.rss for m in text)
    pss = sum(m.totals.pss for m in text)
    # Pss divides each page by the number of mappings of it, within this process too.
    assert rss >= 2 * pss > 0, (rss, pss)


def test_mappings_are_attributed_to_their_interpreter_by_load_base(runtime2, libpython):
    mappings = [m for m in read_smaps() if m.path and Path(m.path).name == libpython.name]
    # A copy's first segment (file offset 0, virtual address 0) starts at its load base.
    starts = {m.start for m in mappings if m.offset == 0}
    bases = []
    for index in range(2):
        base = next(obj.base for obj in runtime2.namespace_libs(index)
                    if Path(obj.path).name == libpython.name)
        assert base in starts
        bases.append(base)
    assert len(set(bases)) == 2
    # The third copy is the host's own.
    assert len(starts - set(bases)) == 1
