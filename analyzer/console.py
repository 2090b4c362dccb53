"""The shared rich consoles: data to stdout, progress and diagnostics to stderr (NO_COLOR honoured)."""
from __future__ import annotations

from functools import cache

from rich.console import Console


@cache
def out_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


@cache
def err_console() -> Console:
    return Console(stderr=True, highlight=False)
