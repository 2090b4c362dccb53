"""`interpkit memory --backend copies`: each interpreter pays for its own copies, measured."""
from __future__ import annotations

from pathlib import Path

from interpkit.analyzer.memory.estimate import footprint
from interpkit.analyzer.memory.measure import run_child, workload_for

MIB = 1024 * 1024
TOLERANCE = 0.10


def test_each_copies_interpreter_holds_its_own_copy_of_the_fixture_state(built_fixtures):
    so = built_fixtures("bigstate")
    workload = workload_for([so], [], "bigstate:checksum")
    sample = run_child({"backend": "copies", "interpreters": 2, **workload.as_dict()}, timeout_s=300)
    assert sample.error is None, sample.error
    expected = footprint(so).writable_bytes          # 40 MiB of .data and .bss, every page written
    assert expected >= 40 * MIB
    # by_object is keyed "interpreter:path"; each interpreter's copy of bigstate is its own file.
    copies = {key: totals for key, totals in sample.raw["by_object"].items() if Path(key.split(":", 1)[1]).name == so.name}
    assert sorted(key.split(":", 1)[0] for key in copies) == ["0", "1"]
    assert len({key.split(":", 1)[1] for key in copies}) == 2
    for key, totals in copies.items():
        assert abs(totals["private_dirty_bytes"] - expected) <= TOLERANCE * expected, (key, totals)
    # And each one's libpython copy is its own file too (what copies cost beyond namespaces).
    libpythons = {key for key in sample.raw["by_object"] if "libpython" in key}
    assert sorted(key.split(":", 1)[0] for key in libpythons) == ["0", "1"]
