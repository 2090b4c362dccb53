"""The namespace guard (interpkit.native.guest.guard) that `interpkit patch` counts on for RTLD_GLOBAL
findings: the shims report those as handled at load time, so the guard must really handle them."""
from __future__ import annotations

from tests.shims.shim_helpers import CSRC, compile_shared, run_child


def test_guard_turns_rtld_global_into_local(tmp_path):
    """With the guard, a library loaded RTLD_GLOBAL no longer interposes on later ones."""
    liba = compile_shared(CSRC / "clash.c", tmp_path / "liba.so", "-DHELPER_VALUE=1")
    libb = compile_shared(CSRC / "clash.c", tmp_path / "libb.so", "-DHELPER_VALUE=2")
    probe = f"""
        import ctypes, os
        {{install}}
        ctypes.CDLL({str(liba)!r}, mode=os.RTLD_GLOBAL)
        import interpkit.native.guest.guard
        print(ctypes.CDLL({str(libb)!r}).value_via_helper(), len(interpkit.native.guest.guard.stripped))
    """
    unguarded = run_child(probe.format(install="pass"))
    guarded = run_child(probe.format(install="import interpkit.native.guest.guard; interpkit.native.guest.guard.install()"))
    assert unguarded.stdout.split() == ["1", "0"], unguarded.stderr
    assert guarded.stdout.split() == ["2", "1"], guarded.stderr
