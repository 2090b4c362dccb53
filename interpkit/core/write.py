"""Writing a command's result: atomically to a file (readers see all or nothing), or to stdout.

Below every layer that writes (the reports, the memory pictures, the shims' patched files), so
none of them imports the command line for it."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from interpkit.core.errors import InputError


def write_atomic(path: Path, text: str | bytes | Iterable[str]) -> None:
    """Write via a temp file in the same folder and rename: readers see all or nothing. `text`
    may come in pieces (a site-packages JSON report is megabytes, encoded as it is written),
    or be bytes (a picture)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write {path} (no such directory {folder})")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        if isinstance(text, bytes):
            with os.fdopen(fd, "wb") as fh:
                fh.write(text)
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.writelines([text] if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def emit(text: str | Iterable[str], output: Path | None) -> None:
    if output is None:
        sys.stdout.writelines([text] if isinstance(text, str) else text)
        sys.stdout.flush()
    else:
        write_atomic(output, text)
