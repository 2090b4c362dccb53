"""interpkit's runtimes: N isolated interpreters in one process, one folder per runtime.

``namespaces/`` (dlmopen), ``copies/`` (renamed libpython copies), ``subinterpreters/`` (CPython
3.12+ subinterpreters in a child), ``core/`` (the C worker core the first two share),
``guest/`` (code that runs inside interpreters and sandboxed children), ``sandbox/`` (the one
harness every child runs in, and the verify probe). Shared host-side pieces sit here:
``errors``, ``limits``, ``requests``, ``pythons``.

Exports are lazy so that ``import interpkit.native.guest.guard`` /
``interpkit.native.guest.interp_server`` inside a namespaced interpreter stays cheap and never
loads the host-side C extension.
"""
from __future__ import annotations

_EXPORTS = {
    "Runtime": "interpkit.native.namespaces.runtime",
    "LoadedObject": "interpkit.native.namespaces.runtime",
    "TeardownRecord": "interpkit.native.namespaces.runtime",
    "CopiesRuntime": "interpkit.native.copies.runtime",
    "RemoteError": "interpkit.native.errors",
    "InterpreterClosed": "interpkit.native.errors",
    "InterpreterTimeout": "interpkit.native.errors",
    "NamespaceLimitError": "interpkit.native.errors",
    "StaticTLSExhausted": "interpkit.native.errors",
    "LibpythonNotShared": "interpkit.native.errors",
    "RuntimeStartError": "interpkit.native.errors",
    "ProbeOutcome": "interpkit.native.sandbox.outcome",
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
