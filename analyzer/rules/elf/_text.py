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
