"""The copies runtime in this process: one renamed libpython copy per interpreter, extensions
from per-interpreter relinked copies, per-interpreter C statics, 32 interpreters at once."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from interpkit.native.copies.runtime import CopiesRuntime
from interpkit.native.errors import RemoteError

from .conftest import COUNTING


def _soname(path: str) -> str | None:
    with open(path, "rb") as fh:
        for section in ELFFile(fh).iter_sections():
            if isinstance(section, DynamicSection):
                return next((t.soname for t in section.iter_tags() if t.entry.d_tag == "DT_SONAME"), None)
    return None


def test_each_interpreter_runs_from_its_own_libpython_copy_on_its_own_thread(copies4):
    infos = copies4.call_all("interpkit.native.guest.interp_server:_info")
    assert {info["pid"] for info in infos} == {os.getpid()}
    assert len({info["sys_id"] for info in infos}) == 4            # four runtimes, not one
    assert [info["native_thread"] for info in infos] == [copies4.native_thread(k) for k in range(4)]
    files = [str(p) for p in copies4.libpython_copies]
    assert len({os.stat(f).st_ino for f in files}) == 4
    sonames = [_soname(f) for f in files]
    assert len(set(sonames)) == 4 and all(".ik" in s for s in sonames)
    for k in range(4):
        mapped = {o.path for o in copies4.namespace_libs(k)}
        assert files[k] in mapped
        assert not any(f in mapped for j, f in enumerate(files) if j != k)


def test_extensions_load_from_per_interpreter_copies(copies4):
    copies4.call_all("interpkit.native.guest.probe_steps:import_module", "clash_a")
    seen = [copies4.copies(k) for k in range(4)]
    sources = [next(s for s in copy if Path(s).name.startswith("clash_a.")) for copy in seen]
    assert len(set(sources)) == 1                                # one source file ...
    targets = [seen[k][sources[0]] for k in range(4)]
    assert len({os.stat(t).st_ino for t in targets}) == 4        # ... four images
    # The module keeps its real __file__ (data files next to it stay reachable).
    assert copies4.eval(1, "__import__('clash_a').__file__") == sources[0]
    # The standard library's own extensions are copies too (nothing binds to the host).
    assert any("lib-dynload" in source for source in seen[2])


@pytest.mark.parametrize("name", COUNTING)
def test_c_statics_are_per_interpreter(copies4, name):
    copies4.call_all("interpkit.native.guest.probe_steps:import_module", name)
    before = copies4.call_all(f"{name}:bump")
    for k in range(4):
        for _ in range(k):
            copies4.call(k, f"{name}:bump")
    after = copies4.call_all(f"{name}:bump")
    # Interpreter k was bumped k + 1 more times than at `before`; a shared static would mix them.
    assert [a - b for a, b in zip(after, before)] == [k + 1 for k in range(4)]


def test_clashing_exports_bind_to_their_own_definitions(copies4):
    # clash_a and clash_b export the same name in one namespace; RTLD_DEEPBIND binds each
    # copy's reference to its own definition first.
    copies4.run(3, "import clash_a, clash_b")
    a0, b0 = copies4.eval(3, "clash_a.bump()"), copies4.eval(3, "clash_b.bump()")
    assert copies4.eval(3, "(clash_a.bump(), clash_a.bump(), clash_b.bump())") == (a0 + 1, a0 + 2, b0 + 1)


def test_gnu_unique_objects_are_shared_unless_the_copy_weakens_them(fixture_dirs, tmp_path):
    # What the GNU_UNIQUE edit is for: without it every copy binds to the first copy's object.
    with CopiesRuntime(2, timeout=120, sys_path=[str(fixture_dirs["gnu_unique_cpp"]), *sys.path],
                       weaken_unique=False, cache=tmp_path) as runtime:
        runtime.call_all("interpkit.native.guest.probe_steps:import_module", "gnu_unique_cpp")
        first = runtime.call(0, "gnu_unique_cpp:bump")
        assert runtime.call(1, "gnu_unique_cpp:bump") == first + 1


def test_32_interpreters_run_pure_python_and_fixtures_with_their_own_state(fixture_dirs):
    n = 32
    with CopiesRuntime(n, timeout=300, sys_path=[*map(str, fixture_dirs.values()), *sys.path]) as runtime:
        assert len({info["sys_id"] for info in runtime.call_all("interpkit.native.guest.interp_server:_info")}) == n
        assert runtime.map("math:factorial", range(3 * n)) == [__import__("math").factorial(i) for i in range(3 * n)]
        runtime.call_all("interpkit.native.guest.probe_steps:import_module", "single_phase_static")
        runtime.run_all("import single_phase_static as m\nfor _ in range(_ik_index): m.bump()")
        assert runtime.call_all("single_phase_static:bump") == [k + 1 for k in range(n)]
        runtime.call_all("interpkit.native.guest.probe_steps:import_module", "bigstate")
        assert runtime.live_indices() == list(range(n))


def test_stop_one_interpreter_the_others_go_on(fixture_dirs):
    with CopiesRuntime(3, timeout=120, sys_path=[str(fixture_dirs["clash_a"]), *sys.path]) as runtime:
        runtime.call_all("interpkit.native.guest.probe_steps:import_module", "clash_a")
        runtime.stop(0)
        assert runtime.live_indices() == [1, 2]
        assert runtime.call(1, "clash_a:bump") == 1
        with pytest.raises(Exception, match="closed"):
            runtime.call(0, "clash_a:bump")


def test_an_extension_that_cannot_be_copied_is_that_modules_outcome(tmp_path):
    bogus = tmp_path / "ik_not_elf.cpython-311-x86_64-linux-gnu.so"
    bogus.write_bytes(b"this is not an ELF file")
    with CopiesRuntime(2, timeout=120, sys_path=[str(tmp_path), *sys.path]) as runtime:
        with pytest.raises(RemoteError) as raised:
            runtime.call(0, "interpkit.native.guest.probe_steps:import_module", "ik_not_elf")
        assert raised.value.type_name == "ImportError"
        assert "cannot copy ik_not_elf" in raised.value.remote_message
        assert "ik_not_elf" in " ".join(runtime.refused())
        assert runtime.call(1, "math:sqrt", 16.0) == 4.0        # the run goes on


def test_templates_are_cached_by_content_and_copies_removed_on_close(fixture_dirs, tmp_path):
    paths = [str(fixture_dirs["clash_a"]), *sys.path]
    templates = []
    for _ in range(2):
        runtime = CopiesRuntime(1, timeout=120, sys_path=paths, cache=tmp_path)
        runtime.call(0, "interpkit.native.guest.probe_steps:import_module", "clash_a")
        copy = next(v for k, v in runtime.copies(0).items() if Path(k).name.startswith("clash_a."))
        templates.append(Path(copy).parent.name)     # the instance folder is named by the template digest
        workdir = runtime.workdir
        assert workdir.is_dir()
        runtime.close()
        assert not workdir.exists()
    assert templates[0] == templates[1]
    assert (tmp_path / templates[0]).is_dir()


def test_the_ceiling_is_named_when_pthread_keys_run_out():
    """Each interpreter takes one pthread key; with two left, a third interpreter cannot start
    and the error says why (measured in a child: the keys are a per-process budget)."""
    from .conftest import run_child

    child = run_child(r"""
import ctypes
libc = ctypes.CDLL(None)
keys = []
while True:
    key = ctypes.c_uint()
    if libc.pthread_key_create(ctypes.byref(key), None) != 0:
        break
    keys.append(key.value)
for value in keys[-2:]:
    libc.pthread_key_delete(ctypes.c_uint(value))
from interpkit.native.copies.runtime import CopiesRuntime
from interpkit.native.errors import RuntimeStartError
try:
    CopiesRuntime(4, timeout=60).close()
    print("STARTED")
except RuntimeStartError as exc:
    print("REFUSED", exc)
""", timeout=300)
    assert child.returncode == 0, child.stderr[-1000:]
    assert "REFUSED" in child.stdout and "no pthread keys left" in child.stdout


def test_static_tls_exhaustion_is_one_modules_outcome(fixture_dirs):
    """Each copy of an initial-exec TLS extension takes static TLS; with the reserve made small
    (tunables, before the child starts) a later interpreter's import fails with the cause, and
    every interpreter still serves."""
    from .conftest import run_child

    child = run_child(f"""
import sys
from interpkit.native.copies.runtime import CopiesRuntime
from interpkit.native.errors import RemoteError
with CopiesRuntime(40, timeout=120, sys_path=[{str(fixture_dirs["initial_exec_tls"])!r}, *sys.path]) as rt:
    loaded, failure = 0, None
    for k in range(40):
        try:
            rt.call(k, "interpkit.native.guest.probe_steps:import_module", "initial_exec_tls")
            loaded += 1
        except RemoteError as exc:
            failure = exc.remote_message
            break
    print("LOADED", loaded)
    print("FAILURE", failure)
    print("ALIVE", len(rt.live_indices()), rt.call(39, "math:sqrt", 9.0))
""", env={"GLIBC_TUNABLES": "glibc.rtld.nns=1:glibc.rtld.optional_static_tls=0"}, timeout=600)
    assert child.returncode == 0, child.stderr[-1000:]
    lines = dict(line.split(" ", 1) for line in child.stdout.splitlines() if " " in line)
    assert 1 <= int(lines["LOADED"]) < 40
    assert "static TLS" in lines["FAILURE"] and "optional_static_tls" in lines["FAILURE"]
    assert lines["ALIVE"] == "40 3.0"


def test_an_elf_without_a_dynamic_section_is_refused_with_the_reason(tmp_path):
    import subprocess

    source = tmp_path / "obj.c"
    source.write_text("int ik_value = 1;\n")
    target = tmp_path / "ik_no_dynamic.cpython-311-x86_64-linux-gnu.so"
    subprocess.run(["gcc", "-c", "-o", str(target), str(source)], check=True)     # ET_REL: no dynamic section
    with CopiesRuntime(1, timeout=120, sys_path=[str(tmp_path), *sys.path]) as runtime:
        with pytest.raises(RemoteError) as raised:
            runtime.call(0, "interpkit.native.guest.probe_steps:import_module", "ik_no_dynamic")
        assert raised.value.type_name == "ImportError"
        assert "no dynamic section" in raised.value.remote_message
        assert runtime.call(0, "math:sqrt", 4.0) == 2.0


def test_each_interpreter_has_its_own_gil(built_fixtures):
    """hostile_loop's PyInit_ spins forever holding the GIL: interpreter 1 keeps answering while
    interpreter 0 is stuck there, which no shared GIL would allow (in a child: 0 is never freed)."""
    from .conftest import run_child

    folder = built_fixtures("hostile_loop").parent
    child = run_child(f"""
import os, sys, threading
from interpkit.native.copies.runtime import CopiesRuntime
rt = CopiesRuntime(2, timeout=120, sys_path=[{str(folder)!r}, *sys.path])
tid = rt.native_thread(0)
def cpu_ticks():
    fields = open(f"/proc/self/task/{{tid}}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])      # utime + stime of interpreter 0's thread
threading.Thread(target=rt.call, args=(0, "interpkit.native.guest.probe_steps:import_module", "hostile_loop"),
                 daemon=True).start()
start = cpu_ticks()
while cpu_ticks() - start < os.sysconf("SC_CLK_TCK"):   # a second of CPU inside PyInit_'s loop
    pass
print("ANSWER", rt.call(1, "math:factorial", 10), flush=True)
os._exit(0)            # interpreter 0 never returns; do not wait for it
""", timeout=300)
    assert child.returncode == 0, child.stderr[-1000:]
    assert "ANSWER 3628800" in child.stdout
