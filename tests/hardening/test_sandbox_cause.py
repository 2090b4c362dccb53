"""The cause a sandboxed child's death is pinned on (native/sandbox.Ending.cause), from real children."""
from __future__ import annotations

import sys

from interpkit.native import sandbox


def _ending(code: str) -> sandbox.Ending:
    return sandbox.run([sys.executable, "-c", code]).ending


def test_an_error_printed_before_a_crash_in_exit_is_the_cause():
    # what c10 does for a second libtorch_python: print its error, exit(); the exit-time
    # destructors racing other threads then die in glibc's heap checks
    ending = _ending("import os, sys\nsys.stderr.write('Key already registered with the same priority: X\\n')\n"
                     "sys.stderr.write('double free or corruption (out)\\n'); sys.stderr.flush(); os.abort()")
    assert ending.signal == "SIGABRT"
    assert ending.cause() == "Key already registered with the same priority: X (then: double free or corruption (out))"


def test_a_crash_with_nothing_before_it_is_its_own_cause():
    ending = _ending("import faulthandler, ctypes; faulthandler.enable(); ctypes.string_at(0)")
    assert ending.signal == "SIGSEGV"
    assert ending.cause().startswith("Fatal Python error: Segmentation fault")


def test_an_error_exit_names_its_last_line():
    ending = _ending("import sys; sys.stderr.write('first\\nthe reason\\n'); sys.exit(3)")
    assert ending.signal is None and ending.cause() == "the reason"
