"""`interpkit patch --backend copies` produces what the copies runtime loads: before -> after,
observed in the copies runtime, for the single-phase, GNU_UNIQUE, clash and libpython fixtures."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interpkit.native.copies.runtime import CopiesRuntime
from interpkit.shims.relink import read_state

from .conftest import REPO_ROOT, run_child

FIXTURES = ("single_phase_static", "gnu_unique_cpp", "clash_a", "clash_b", "libpython_linked")

# The unpatched input, loaded as built (copy_extensions=[]): its Py* references bind to the
# host's libpython, which does not run this interpreter.
_AS_BUILT = r"""
import sys
from interpkit.native.copies.runtime import CopiesRuntime
with CopiesRuntime(2, timeout=120, sys_path=[{folder!r}, *sys.path], copy_extensions=[]) as rt:
    rt.call_all("interpkit.native.guest.probe_steps:import_module", {name!r})
    print("STATE", rt.call_all("interpkit.native.guest.probe_steps:smoke", {name!r}))
"""


@pytest.fixture(scope="module")
def patched(built_fixtures, tmp_path_factory) -> tuple[Path, Path]:
    source = tmp_path_factory.mktemp("input") / "tree"
    source.mkdir()
    for name in FIXTURES:
        built = built_fixtures(name)
        shutil.copy2(built, source / built.name)
    out = tmp_path_factory.mktemp("patched")
    done = subprocess.run([sys.executable, "-m", "interpkit", "patch", str(source), "-o", str(out),
                           "--backend", "copies", "--no-verify", "--format", "json"],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return source, out / "tree"


def test_the_patch_lists_every_extension_for_per_interpreter_copies(patched):
    _, tree = patched
    manifest = json.loads((tree / "interpkit-copies.json").read_text())
    assert set(manifest["modules"]) == set(FIXTURES)
    assert not read_state(next(tree.glob("gnu_unique_cpp.*.so"))).gnu_unique


@pytest.mark.parametrize("name", ["single_phase_static", "clash_a", "libpython_linked"])
def test_before_the_unpatched_extension_does_not_run_in_the_copies_runtime(patched, name):
    source, _ = patched
    child = run_child(_AS_BUILT.format(folder=str(source), name=name), timeout=300)
    # Bound to the host's libpython: the interpreter dies (SIGSEGV, or glibc's abort on a
    # pointer freed by the wrong allocator) before any state is reported.
    assert child.returncode != 0 and "STATE" not in child.stdout, (child.returncode, child.stderr[-500:])


@pytest.mark.parametrize("name", ["single_phase_static", "gnu_unique_cpp", "clash_a", "clash_b", "libpython_linked"])
def test_after_the_patch_output_runs_with_state_per_interpreter(patched, name):
    _, tree = patched
    with CopiesRuntime(3, timeout=120, manifest=tree / "interpkit-copies.json", sys_path=[str(tree), *sys.path],
                       weaken_unique=False) as runtime:
        runtime.call_all("interpkit.native.guest.probe_steps:import_module", name)
        assert all(Path(src).resolve().parent == tree.resolve()
                   for src in runtime.copies(0) if Path(src).name.startswith(name + "."))
        if name == "libpython_linked":
            assert runtime.call_all("interpkit.native.guest.probe_steps:smoke", name)[2]["attributes"] >= 1
            return
        runtime.run_all(f"import {name}\nfor _ in range(_ik_index): {name}.bump()")
        assert runtime.call_all(f"{name}:bump") == [1, 2, 3]


def test_gnu_unique_before_and_after_the_patch(patched):
    """The runtime told not to weaken GNU_UNIQUE itself: the input's copies share one counter,
    the patched file's copies (STB_WEAK, from the patch) each have their own."""
    source, tree = patched
    counts = {}
    for label, folder, manifest in (("before", source, None), ("after", tree, tree / "interpkit-copies.json")):
        extensions = None if manifest else [next(folder.glob("gnu_unique_cpp.*.so"))]
        with CopiesRuntime(2, timeout=120, sys_path=[str(folder), *sys.path], manifest=manifest,
                           copy_extensions=extensions, weaken_unique=False) as runtime:
            runtime.call_all("interpkit.native.guest.probe_steps:import_module", "gnu_unique_cpp")
            counts[label] = [runtime.call(0, "gnu_unique_cpp:bump"), runtime.call(1, "gnu_unique_cpp:bump")]
    # Before: interpreter 1 counts on from interpreter 0's object (the process-wide unique
    # table may already hold it from an earlier copy, so only the step is fixed).
    assert counts["before"][1] == counts["before"][0] + 1
    assert counts["after"] == [1, 1]
