"""Small wording helpers shared by the ELF rules (no RULE here, so the registry skips it)."""
from __future__ import annotations


def examples(names, limit: int = 3) -> str:
    """`a`, `b`, `c` and 12 more"""
    names = list(names)
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    rest = len(names) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# A finding's data names at most this many symbols: a clash between two large libraries can
# share thousands of exports, and the JSON report carries every finding's data.
DATA_SYMBOLS = 32


def symbols_data(names) -> dict:
    """Finding data for a list of symbols: the first DATA_SYMBOLS (in the given order) and the count."""
    names = list(names)
    return {"symbols": names[:DATA_SYMBOLS], "symbol_count": str(len(names))}
