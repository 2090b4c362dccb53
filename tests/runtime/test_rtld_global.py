"""docs/facts.md fact 3: RTLD_GLOBAL inside a namespace crashes glibc; the guard strips it."""
from __future__ import annotations

import os

from interpkit.native.guest.guard import RTLD_GLOBAL, RTLD_LOCAL, strip_global
from tests.runtime.runtime_helpers import run_python


def test_raw_rtld_global_dlopen_in_a_namespace_crashes():
    # _ctypes.dlopen is the primitive under the guard's wrapper: it still passes RTLD_GLOBAL.
    code = """
from interpkit.native import Runtime
runtime = Runtime(1)
runtime.run(0, "import _ctypes, os\\n_ctypes.dlopen('libbz2.so.1.0', os.RTLD_GLOBAL | os.RTLD_NOW)")
print("survived")
"""
    result = run_python(code, timeout=60)
    assert result.signal == "SIGSEGV", (result.returncode, result.stdout, result.stderr[-800:])
    assert "survived" not in result.stdout


def test_guard_turns_rtld_global_into_local(runtime2):
    runtime2.run(1, "import ctypes\nlib = ctypes.CDLL('libz.so.1', mode=ctypes.RTLD_GLOBAL)\n"
                    "version = lib.zlibVersion\nversion.restype = ctypes.c_char_p\n")
    assert runtime2.eval(1, "version().decode()").count(".") >= 1
    stripped = runtime2.info(1)["stripped_global_loads"]
    assert any(kind == "ctypes" and "libz.so.1" in name and mode & RTLD_GLOBAL
               for kind, name, mode in stripped)


def test_guard_covers_setdlopenflags(runtime2):
    runtime2.run(0, "import os, sys\nsys.setdlopenflags(os.RTLD_GLOBAL | os.RTLD_NOW)\n"
                    "import _bz2\n")
    flags = runtime2.eval(0, "__import__('sys').getdlopenflags()")
    assert not flags & os.RTLD_GLOBAL and flags & os.RTLD_NOW
    assert ("sys.setdlopenflags", "", os.RTLD_GLOBAL | os.RTLD_NOW) in [
        tuple(entry) for entry in runtime2.info(0)["stripped_global_loads"]]


def test_strip_global_keeps_other_flags():
    assert strip_global(RTLD_GLOBAL | os.RTLD_NOW) == RTLD_LOCAL | os.RTLD_NOW
    assert strip_global(os.RTLD_LAZY) == os.RTLD_LAZY
