"""Namespace guard: make RTLD_GLOBAL loads safe inside a non-base link-map namespace.

Run first in every namespaced interpreter (the runtime's bootstrap calls ``install()``).

Why: ``dlopen(..., RTLD_GLOBAL)`` from code in a namespace other than the base one crashes
glibc 2.36 in ``add_to_global_resize`` (docs/facts.md fact 3), and ``import torch`` does exactly
that (``ctypes.CDLL(libtorch_global_deps.so, mode=RTLD_GLOBAL)``). Inside a namespace,
RTLD_GLOBAL buys nothing anyway: every object the interpreter loads already lands in its own
namespace, and dependencies are resolved through DT_NEEDED. So the guard turns RTLD_GLOBAL
into RTLD_LOCAL on the two Python-level paths to ``dlopen``:

- ``ctypes``: the module-level ``_dlopen`` that ``CDLL.__init__`` (and so ``PyDLL``,
  ``cdll.LoadLibrary`` ...) calls;
- ``sys.setdlopenflags``: the flags the import system passes to ``dlopen`` for extensions.

Known problems: C code calling ``dlopen(RTLD_GLOBAL)`` directly is not covered; the analyzer's
IK4xx source rules and ELF rules flag such libraries instead.

This module depends on the standard library only, so it can be run by file path before any
package import is possible. ``strip_global(mode)`` is the single place that rewrites flags.
"""
from __future__ import annotations

import os
import sys

RTLD_GLOBAL = getattr(os, "RTLD_GLOBAL", 0x100)
RTLD_LOCAL = getattr(os, "RTLD_LOCAL", 0)

#: Every load whose RTLD_GLOBAL was removed, as (what, name, requested mode); the probe and
#: tests read it to show the guard acted.
stripped: list[tuple[str, str, int]] = []

_installed = False


def strip_global(mode: int) -> int:
    """Return ``mode`` with RTLD_GLOBAL replaced by RTLD_LOCAL."""
    if mode & RTLD_GLOBAL:
        return (mode & ~RTLD_GLOBAL) | RTLD_LOCAL
    return mode


def _guard_ctypes() -> None:
    import ctypes

    original = ctypes._dlopen

    def _dlopen(name, mode=ctypes.DEFAULT_MODE, *args):
        if mode & RTLD_GLOBAL:
            stripped.append(("ctypes", str(name), mode))
        return original(name, strip_global(mode), *args)

    _dlopen.__wrapped__ = original
    ctypes._dlopen = _dlopen


def _guard_setdlopenflags() -> None:
    original = sys.setdlopenflags

    def setdlopenflags(flags: int, /) -> None:
        if flags & RTLD_GLOBAL:
            stripped.append(("sys.setdlopenflags", "", flags))
        original(strip_global(flags))

    setdlopenflags.__wrapped__ = original
    setdlopenflags.__doc__ = original.__doc__
    sys.setdlopenflags = setdlopenflags
    # Flags set before the guard ran (inherited from nothing today, but cheap to be sure).
    original(strip_global(sys.getdlopenflags()))


def install() -> None:
    """Install the guard once in the current interpreter."""
    global _installed
    if _installed:
        return
    _guard_ctypes()
    _guard_setdlopenflags()
    _installed = True
