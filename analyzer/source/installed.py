"""Which installed distribution a source file belongs to, editable installs included.

An editable install (`pip install -e`, PEP 660) leaves the package's files in the project's
checkout, outside every site-packages folder; the distribution's `direct_url.json` names that
checkout (`dir_info.editable`). A module whose file lies there is installed code, even when the
checkout sits beside the model (detectron2's documented layout), and the model's own code only
when the model itself lives inside that checkout.
"""
from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlparse


def editable_projects(search_path=None) -> dict[Path, str]:
    """Real path of each editable project's checkout -> `name version`, for `search_path`
    (default: the current sys.path; a scan's target Python has its own)."""
    return _editable_projects(tuple(sys.path if search_path is None else search_path))


@cache
def _editable_projects(search_path: tuple[str, ...]) -> dict[Path, str]:
    from importlib import metadata

    out: dict[Path, str] = {}
    for dist in metadata.distributions(path=list(search_path)):
        try:
            text = dist.read_text("direct_url.json")
            if not text:
                continue
            record = json.loads(text)
            if not (record.get("dir_info") or {}).get("editable"):
                continue
            url = urlparse(record.get("url", ""))
            if url.scheme != "file":
                continue
            folder = Path(unquote(url.path)).resolve()
            fields = dist.metadata
            out.setdefault(folder, f"{fields['Name']} {fields['Version']} (editable)")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


def editable_project_of(path: Path | str | None) -> tuple[Path, str] | None:
    """(checkout folder, `name version (editable)`) of the editable install that holds path."""
    if path is None:
        return None
    real = Path(path).resolve()
    for folder, label in editable_projects().items():
        if real == folder or folder in real.parents:
            return folder, label
    return None
