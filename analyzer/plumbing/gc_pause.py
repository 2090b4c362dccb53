"""The cyclic garbage collector paused while one file is analyzed.

Parsing a large file builds ~10^5 ast nodes in one burst, and every 700 new container objects
wake the young-generation collector, which then walks nodes that cannot be garbage: an ast has
no reference cycles, so reference counting frees it. Pausing the collector for one file and
resuming it afterwards loses nothing (a cycle made meanwhile is found at the next collection,
one file later) and saved ~16 % of the rule pass's CPU time on the bench's site-packages
(bench/RESULTS.md, "Scan speed (issue 16, session 4)").
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic cyclic collection inside the block; left as found (a block inside another,
    or one entered where the collector is already off, changes nothing)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
