"""interpkit's runtimes: N isolated interpreters in one process (namespaces backend here).

Exports are lazy so that ``import native.guard`` / ``native.interp_server`` inside a
namespaced interpreter stays cheap and never loads the host-side C extension.
"""
from __future__ import annotations

_EXPORTS = {
    "Runtime": "native.runtime",
    "LoadedObject": "native.runtime",
    "RemoteError": "native.errors",
    "InterpreterClosed": "native.errors",
    "InterpreterTimeout": "native.errors",
    "NamespaceLimitError": "native.errors",
    "StaticTLSExhausted": "native.errors",
    "LibpythonNotShared": "native.errors",
    "RuntimeStartError": "native.errors",
    "ProbeOutcome": "native.outcome",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'native' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
