"""interpkit's runtimes: N isolated interpreters in one process (namespaces backend here).

Exports are lazy so that ``import interpkit.native.guard`` / ``interpkit.native.interp_server`` inside a
namespaced interpreter stays cheap and never loads the host-side C extension.
"""
from __future__ import annotations

_EXPORTS = {
    "Runtime": "interpkit.native.runtime",
    "LoadedObject": "interpkit.native.runtime",
    "TeardownRecord": "interpkit.native.runtime",
    "RemoteError": "interpkit.native.errors",
    "InterpreterClosed": "interpkit.native.errors",
    "InterpreterTimeout": "interpkit.native.errors",
    "NamespaceLimitError": "interpkit.native.errors",
    "StaticTLSExhausted": "interpkit.native.errors",
    "LibpythonNotShared": "interpkit.native.errors",
    "RuntimeStartError": "interpkit.native.errors",
    "ProbeOutcome": "interpkit.native.outcome",
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
