"""DT_NEEDED closure: the loader's search order, read from files only."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files, dotted_module_name
from interpkit.analyzer.elf.closure import ld_so_conf_dirs
from interpkit.core.findings import FileKind


def gcc_shared(source: str, output: Path, *flags: str) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    src = output.parent / (output.name.split(".", 1)[0] + ".c")
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", str(src), "-o", str(output), *flags], check=True, capture_output=True)
    return output


def test_ld_so_conf_follows_includes(tmp_path):
    conf_d = tmp_path / "ld.so.conf.d"
    conf_d.mkdir()
    (conf_d / "b.conf").write_text("/opt/b/lib  # vendor b\n")
    (conf_d / "a.conf").write_text("# comment only\n/opt/a/lib\n")
    conf = tmp_path / "ld.so.conf"
    conf.write_text(f"/opt/first\ninclude {conf_d}/*.conf\n")
    assert ld_so_conf_dirs(str(conf)) == ("/opt/first", "/opt/a/lib", "/opt/b/lib")


@pytest.mark.integration  # compiles libraries with gcc
def test_wheel_libs_folder_is_searched_and_scanned_once(tmp_path):
    """auditwheel layout: site/pkg/_ext.so needs libvendored-1a2b.so.1 from site/pkg.libs/."""
    site = tmp_path / "site"
    lib = gcc_shared("__thread int tls_counter __attribute__((tls_model(\"initial-exec\")));\n"
                     "int vendored(void) { return ++tls_counter; }\n",
                     site / "pkg.libs" / "libvendored-1a2b.so.1", "-Wl,-soname,libvendored-1a2b.so.1")
    (site / "pkg").mkdir()
    (site / "pkg" / "__init__.py").write_text("")
    one = gcc_shared("int vendored(void);\nint one(void) { return vendored(); }\n", site / "pkg" / "libone.so",
                     "-L", str(lib.parent), "-l:libvendored-1a2b.so.1")
    two = gcc_shared("int vendored(void);\nint two(void) { return vendored(); }\n", site / "pkg" / "libtwo.so",
                     "-L", str(lib.parent), "-l:libvendored-1a2b.so.1")
    results = analyze_elf_files([one, two], Config())
    assert [r.path for r in results] == [one, two, lib]
    assert results[2].kind is FileKind.LIBRARY
    assert [f.code for f in results[2].findings] == ["IK207"]  # the dependency's own finding
    assert results[0].facts["closure"]["libvendored-1a2b.so.1"] == str(lib)
    assert all(not r.findings for r in results[:2])


@pytest.mark.integration  # compiles libraries with gcc
def test_no_closure_when_asked(tmp_path):
    lib = gcc_shared("int base(void) { return 1; }\n", tmp_path / "libbase.so")
    user = gcc_shared("int base(void);\nint user(void) { return base(); }\n", tmp_path / "libuser.so",
                      "-L", str(tmp_path), "-lbase", "-Wl,-rpath,$ORIGIN")
    assert [r.path for r in analyze_elf_files([user], Config(), closure=False)] == [user]
    assert [r.path for r in analyze_elf_files([user], Config())] == [user, lib]


def test_dotted_module_name(tmp_path):
    package = tmp_path / "site" / "outer" / "inner"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package.parent / "__init__.py").write_text("")
    path = package / "_speedups.cpython-311-x86_64-linux-gnu.so"
    assert dotted_module_name(path, "_speedups") == "outer.inner._speedups"
    assert dotted_module_name(tmp_path / "top.so", None) == "top"


@pytest.mark.integration  # compiles libraries with gcc
def test_a_copy_the_package_points_at_wins_over_one_found_elsewhere(tmp_path):
    """ld.so loads a soname once and reuses it: the copy a package's own library finds through its
    RUNPATH (nvidia-* wheels' libcudart next to torch) is the one the package gets, not another
    site-packages copy the first needer would have found; the other copy is never scanned."""
    site = tmp_path / "site-packages"
    (site / "other" / "__init__.py").parent.mkdir(parents=True)
    (site / "other" / "__init__.py").write_text("")
    elsewhere = gcc_shared("int dep(void) { return 1; }\n", site / "other" / "lib" / "libdep.so", "-Wl,-soname,libdep.so")
    bundled = gcc_shared("int dep(void) { return 2; }\n", site / "app" / "vendor" / "libdep.so", "-Wl,-soname,libdep.so")
    gcc_shared("int dep(void);\nint b(void) { return dep(); }\n", site / "app" / "libb.so",
               "-Wl,-soname,libb.so", f"-L{bundled.parent}", "-ldep", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/vendor")
    root = gcc_shared("int dep(void);\nint b(void);\nint a(void) { return dep() + b(); }\n", site / "app" / "liba.so",
                      f"-L{bundled.parent}", "-ldep", f"-L{site / 'app'}", "-lb", "-Wl,--enable-new-dtags,-rpath,$ORIGIN")
    results = analyze_elf_files([root], Config())
    assert results[0].facts["closure"]["libdep.so"] == str(bundled)
    scanned = [r.path for r in results]
    assert bundled in scanned and elsewhere not in scanned
    assert len(scanned) == len(set(scanned))


@pytest.mark.integration  # compiles libraries with gcc
def test_a_file_built_for_another_python_is_not_served_by_our_packages(tmp_path):
    """A library of the running Python's installed packages (`<pkg>/lib`, `<dist>.libs`) may
    serve our own extensions, never one built for another CPython (a cp314 tree scanned from
    here): that Python has its own site-packages."""
    import importlib.machinery
    import sys

    from interpkit.analyzer.elf.closure import package_lib_dirs

    library = next((p for folder in package_lib_dirs() for p in sorted(folder.glob("lib*.so*")) if p.is_file()), None)
    if library is None:
        pytest.fail("the running Python has no installed package with a lib/ or .libs folder to test with")
    ours = importlib.machinery.EXTENSION_SUFFIXES[0]          # .cpython-311-x86_64-linux-gnu.so
    other = ours.replace("cpython-%d%d" % sys.version_info[:2], "cpython-399")
    source = "int f(void) { return 1; }\n"
    link = ("-Wl,--no-as-needed", "-L", str(library.parent), f"-l:{library.name}")
    native = gcc_shared(source, tmp_path / "ours" / f"ext{ours}", *link)
    foreign = gcc_shared(source, tmp_path / "other" / f"ext{other}", *link)
    results = {r.path: r for r in analyze_elf_files([native, foreign], Config())}
    assert results[native].facts["closure"][library.name] == str(library)
    assert results[foreign].facts["closure"].get(library.name) != str(library)
