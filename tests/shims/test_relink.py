"""Relink edits change what the dynamic loader does, shown by loading the results."""
from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import pytest

from tests.shims.shim_helpers import CSRC, compile_shared, run_child
from interpkit.shims.plan import Edit, EditKind, FilePlan, PlanConflict
from interpkit.shims.relink import apply_binary_edits, plan_hide, plan_runpath, plan_unique, read_state


def _byte_diff(a: Path, b: Path) -> int:
    x, y = a.read_bytes(), b.read_bytes()
    assert len(x) == len(y)
    return sum(1 for i, j in zip(x, y) if i != j)


def test_gnu_unique_to_weak_unshares_two_copies(tmp_path):
    """Two copies of one C++ library share an inline static through STB_GNU_UNIQUE even when
    loaded RTLD_LOCAL; after the relink each copy counts on its own."""
    original = compile_shared(CSRC / "unique.cpp", tmp_path / "libunique.so")
    assert read_state(original).gnu_unique == ("_ZZ12shared_countvE5count",)
    before = [shutil.copyfile(original, tmp_path / f"before{i}.so") for i in (1, 2)]
    after = [shutil.copyfile(original, tmp_path / f"after{i}.so") for i in (1, 2)]
    for path in after:
        state = read_state(path)
        changed = apply_binary_edits(path, plan_unique(path, state, None, "IK206"))
        assert changed == ["_ZZ12shared_countvE5count: STB_GNU_UNIQUE -> STB_WEAK"]
        assert read_state(path).gnu_unique == ()
        # One byte per symbol table entry (.dynsym and .symtab): nothing else in the file moved.
        assert _byte_diff(original, path) == 2
    probe = """
        import ctypes, sys
        a, b = (ctypes.CDLL(p) for p in sys.argv[1:3])
        print(a.bump(), b.bump())
    """
    shared = run_child(probe.replace("sys.argv[1:3]", repr([str(p) for p in before])))
    private = run_child(probe.replace("sys.argv[1:3]", repr([str(p) for p in after])))
    assert shared.stdout.split() == ["1", "2"], shared.stderr
    assert private.stdout.split() == ["1", "1"], private.stderr


def test_symbol_patch_is_idempotent(tmp_path):
    path = compile_shared(CSRC / "unique.cpp", tmp_path / "libunique.so")
    edits = plan_unique(path, read_state(path), None, "IK206")
    apply_binary_edits(path, edits)
    once = path.read_bytes()
    assert apply_binary_edits(path, edits) == []
    assert path.read_bytes() == once
    assert plan_unique(path, read_state(path), None, "IK206") == []


def test_hidden_export_no_longer_interposes(tmp_path):
    """liba loaded RTLD_GLOBAL interposes its `helper` on libb's own calls; hidden, libb keeps its own."""
    liba = compile_shared(CSRC / "clash.c", tmp_path / "liba.so", "-DHELPER_VALUE=1")
    libb = compile_shared(CSRC / "clash.c", tmp_path / "libb.so", "-DHELPER_VALUE=2")
    fixed = shutil.copyfile(libb, tmp_path / "libb_fixed.so")
    assert apply_binary_edits(fixed, [Edit(EditKind.HIDE_SYMBOL, "helper")]) == ["helper: exported -> local, hidden"]
    assert "helper" not in read_state(fixed).exports
    probe = f"""
        import ctypes, os
        ctypes.CDLL({str(liba)!r}, mode=os.RTLD_GLOBAL)
        print(ctypes.CDLL({{lib!r}}).value_via_helper())
    """
    assert run_child(probe.format(lib=str(libb))).stdout.strip() == "1"
    assert run_child(probe.format(lib=str(fixed))).stdout.strip() == "2"


def test_hiding_refuses_entry_points_and_library_interfaces(tmp_path, fixture_copy):
    lib = compile_shared(CSRC / "clash.c", tmp_path / "liba.so", "-DHELPER_VALUE=1")
    edits, reason = plan_hide(lib, read_state(lib), "helper", "IK304")
    assert edits == [] and "interface" in reason
    ext = fixture_copy("clash_a")
    edits, reason = plan_hide(ext, read_state(ext), "PyInit_clash_a", "IK304")
    assert edits == [] and "entry point" in reason
    edits, reason = plan_hide(ext, read_state(ext), "interpkit_shared_counter", "IK304")
    assert reason is None and [e.target for e in edits] == ["interpkit_shared_counter"]


def test_plan_rejects_contradictions():
    plan = FilePlan(Path("x.so"))
    plan.add(Edit(EditKind.SET_RUNPATH, "DT_RUNPATH", value="$ORIGIN"))
    plan.add(Edit(EditKind.SET_RUNPATH, "DT_RUNPATH", value="$ORIGIN"))  # the same edit twice merges
    assert len(plan.edits) == 1
    with pytest.raises(PlanConflict, match="DT_RUNPATH set to both"):
        plan.add(Edit(EditKind.SET_RUNPATH, "DT_RUNPATH", value="/opt/lib"))
    plan.add(Edit(EditKind.UNIQUE_TO_WEAK, "sym"))
    plan.add(Edit(EditKind.HIDE_SYMBOL, "sym"))        # hiding subsumes weakening: one edit remains
    plan.add(Edit(EditKind.UNIQUE_TO_WEAK, "sym"))
    assert [(e.kind, e.target) for e in plan.edits if e.target == "sym"] == [(EditKind.HIDE_SYMBOL, "sym")]
    with pytest.raises(PlanConflict, match="entry point"):
        plan.add(Edit(EditKind.HIDE_SYMBOL, "PyInit_x"))


def test_runpath_fix_makes_vendored_dependency_resolve(tmp_path):
    """A library whose RUNPATH points at the build machine loads once RUNPATH names $ORIGIN/../x.libs."""
    libs = tmp_path / "pkg.libs"
    libs.mkdir()
    compile_shared(CSRC / "clash.c", libs / "libhelper.so", "-DHELPER_VALUE=7")
    (tmp_path / "pkg").mkdir()
    user = tmp_path / "pkg" / "libuser.so"
    source = tmp_path / "user.c"
    source.write_text("int helper(void);\nint use(void) { return helper() * 6; }\n")
    compile_shared(source, user, f"-L{libs}", "-lhelper", "-Wl,-rpath,/nonexistent/build/lib")
    load = f"import ctypes; print(ctypes.CDLL({str(user)!r}).use())"
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    assert "libhelper.so" in run_child(load, env=env).stderr  # cannot open shared object file
    state = read_state(user)
    edits, reason = plan_runpath(user, state, "IK306", (libs,))
    assert reason is None
    assert [(e.value, e.old) for e in edits] == [("$ORIGIN/../pkg.libs", "/nonexistent/build/lib")]
    apply_binary_edits(user, edits)
    assert read_state(user).runpath == ("$ORIGIN/../pkg.libs",)
    assert run_child(load, env=env).stdout.strip() == "42"
    assert plan_runpath(user, read_state(user), "IK306", (libs,))[0] == []  # converged


def test_libpython_needed_lets_a_host_without_python_resolve_py_symbols(tmp_path, fixture_copy):
    """The copies runtime loads libpython RTLD_LOCAL, so nothing global provides Py*: an extension
    without DT_NEEDED on libpython cannot load; relinked to the interpreter's libpython it does."""
    libpython = sysconfig.get_config_var("INSTSONAME")
    libdir = sysconfig.get_config_var("LIBDIR")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        pytest.skip("this Python has no shared libpython")
    host_c = tmp_path / "host.c"
    host_c.write_text(
        '#include <dlfcn.h>\n#include <stdio.h>\n'
        'int main(int argc, char **argv) {\n'
        '    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);\n'
        '    if (!h) { printf("fail %s\\n", dlerror()); return 1; }\n'
        '    printf("ok\\n"); return 0;\n}\n')
    host = tmp_path / "host"
    import subprocess

    subprocess.run(["gcc", "-o", str(host), str(host_c), "-ldl"], check=True)
    ext = fixture_copy("multi_phase_isolated")
    env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    before = subprocess.run([str(host), str(ext)], capture_output=True, text=True, env=env)
    assert before.returncode == 1 and "undefined symbol: Py" in before.stdout
    relinked = shutil.copyfile(ext, tmp_path / "relinked.so")
    done = apply_binary_edits(relinked, [Edit(EditKind.SET_LIBPYTHON, "DT_NEEDED libpython", value=libpython)])
    assert done == [f"DT_NEEDED libpython: (none) -> {libpython}"]
    assert read_state(relinked).libpython == [libpython]
    after = subprocess.run([str(host), str(relinked)], capture_output=True, text=True, env=env)
    assert after.stdout.strip() == "ok", after.stdout
