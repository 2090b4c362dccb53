"""Steps of a namespaces probe that run *inside* an interpreter (stdlib only).

``interpkit.native.probe`` calls these through ``Runtime.call``; each returns plain data.
"""
from __future__ import annotations

import importlib
import sys

#: Set on the probed module in one interpreter and looked for in the others.
MARKER = "_interpkit_probe_marker"


def import_module(name: str) -> str:
    """Import ``name``; return the file it came from (or its repr)."""
    module = importlib.import_module(name)
    return str(getattr(module, "__file__", None) or repr(module))


def smoke(name: str) -> dict:
    """``dir()`` the module and ``repr`` every public attribute.

    ``identities`` maps each public attribute to ``id(value)``: two live objects in one
    process have distinct ids, so an equal id seen from two interpreters at once means the
    object itself is shared between them.
    """
    module = sys.modules[name]
    names = [attr for attr in dir(module) if not attr.startswith("_")]
    identities: dict[str, int] = {}
    repr_errors: list[str] = []
    for attr in names:
        try:
            value = getattr(module, attr)
            repr(value)
        except Exception as exc:  # noqa: BLE001 - a failing repr is an observation
            repr_errors.append(f"{attr}: {type(exc).__name__}: {exc}"[:300])
            continue
        if not isinstance(value, (int, float, str, bytes, bool, type(None))):
            # Small ints, interned strings and None are per-interpreter too, but equal
            # values may share ids within one interpreter; only objects are compared.
            identities[attr] = id(value)
    return {"attributes": len(names), "identities": identities, "repr_errors": repr_errors}


def set_marker(name: str, value: str) -> None:
    setattr(sys.modules[name], MARKER, value)


def get_marker(name: str) -> str | None:
    return getattr(sys.modules[name], MARKER, None)
