"""Namespace guard: the run-time shim for the namespaces backend, owned by native/ and exposed here.

Two hazards cannot be fixed in any file because they come from the process, not the binary:
``dlopen(RTLD_GLOBAL)`` from inside a non-base namespace crashes glibc (DESIGN.md fact 3), and
a thread entering a namespace needs that namespace's libc per-thread set-up (fact 2). The
namespaces runtime handles both in its bootstrap: ``interpkit.native.guard.install()`` rewrites
RTLD_GLOBAL to RTLD_LOCAL for ctypes and ``sys.setdlopenflags`` in every namespaced
interpreter, and the worker threads call the namespace's ``__ctype_init``. The shims do not
duplicate that code; ``interpkit patch`` reports RTLD_GLOBAL findings as handled at load time
by this guard, and code that builds its own host can install it from here.
"""
from __future__ import annotations

from interpkit.native.guard import install, strip_global, stripped

__all__ = ["install", "strip_global", "stripped"]
