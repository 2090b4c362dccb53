"""analyze_elf_files on each compiled fixture gives exactly the expected rule codes, per Python."""
from __future__ import annotations

import subprocess
import sys

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.core.findings import Backend, FileKind, Verdict

# Every extension here takes Py* from the global scope, so each carries IK302 (info, copies; the
# copies runtime relinks every copy it loads, so its copies verdict stays ok).
# 3.11 headers have no Py_mod_multiple_interpreters, so multi-phase fixtures lack the slot there.


HOST = tuple(sys.version_info[:2])


def in_process(version: str, verdict: Verdict = Verdict.OK) -> Verdict:
    """The copies verdict of a file built for `version`: that runtime hosts the running CPython
    only, so a file for another one is n/a there (IK309)."""
    return verdict if version == "%d.%d" % HOST else Verdict.NOT_APPLICABLE


def in_namespaces(version: str, verdict: Verdict = Verdict.OK) -> Verdict:
    """The namespaces verdict of a file built for `version`: judged where the namespaces runtime
    can be built for that CPython (found here with a shared libpython), else n/a (IK309)."""
    from interpkit.analyzer.rules.elf.foreign_python_abi import namespaces_python

    found = version == "%d.%d" % HOST or namespaces_python(tuple(int(part) for part in version.split("."))) is not None
    return verdict if found else Verdict.NOT_APPLICABLE


def codes_of(path):
    """(result, codes) with IK309 checked here (present exactly when the file is built for another
    CPython than this one) and left out of the codes, so each test lists what the file itself shows."""
    [result] = [r for r in analyze_elf_files([path], Config(), closure=False) if r.path == path]
    codes = {f.code for f in result.findings}
    built_for = result.facts.get("built_for")
    foreign = built_for is not None and built_for != "%d.%d" % HOST
    assert ("IK309" in codes) == foreign, (built_for, codes)
    return result, sorted(codes - {"IK309"})


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_single_phase_static(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("single_phase_static", python_for(version)))
    assert codes == ["IK101", "IK202", "IK302"]
    assert result.kind is FileKind.EXTENSION
    assert result.module == "single_phase_static"
    [init] = result.facts["init"]
    assert (init["kind"], init["proved"], init["m_size"]) == ("single-phase", True, -1)
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.FAIL
    assert result.verdicts[Backend.NAMESPACES] is in_namespaces(version)


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_multi_phase_isolated_reads_per_interpreter_gil_slot(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("multi_phase_isolated", python_for(version)))
    assert codes == ["IK302"]
    [init] = result.facts["init"]
    assert init["kind"] == "multi-phase" and init["proved"]
    assert init["multiple_interpreters"] == "per-interpreter-gil-supported"
    assert init["gil"] == ("not-used" if version == "3.13" else "absent")
    assert init["m_size"] == 16  # two PyObject* in module state
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.OK


def test_multi_phase_isolated_on_311_has_no_slot(built_fixtures, python_for):
    result, codes = codes_of(built_fixtures("multi_phase_isolated", python_for("3.11")))
    assert codes == ["IK102", "IK302"]
    assert result.facts["init"][0]["multiple_interpreters"] == "absent"


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_clean(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("clean", python_for(version)))
    assert codes == ["IK302"]
    assert result.verdicts == {Backend.NAMESPACES: in_namespaces(version), Backend.SUBINTERPRETERS: Verdict.OK,
                               Backend.COPIES: in_process(version)}


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_multi_phase_no_slot(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("multi_phase_no_slot", python_for(version)))
    assert codes == ["IK102", "IK302"]
    assert result.facts["init"][0]["slots"] == [["Py_mod_exec", None]]


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_static_type(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("static_type", python_for(version)))
    assert codes == ["IK201", "IK302"]
    [finding] = [f for f in result.findings if f.code == "IK201"]
    assert finding.symbol == "Point_Type"  # named from .symtab: static objects never reach .dynsym


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_gilstate(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("gilstate", python_for(version)))
    assert codes == ["IK203", "IK302"]
    # CPython imports it in an isolated subinterpreter; the hazard is on foreign threads.
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.OK


@pytest.mark.parametrize("version", ["3.11", "3.13"])
def test_gnu_unique_cpp(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("gnu_unique_cpp", python_for(version)))
    expected = ["IK206", "IK302", "IK303"] + (["IK102"] if version == "3.11" else [])
    assert codes == sorted(expected)
    [finding] = [f for f in result.findings if f.code == "IK206"]
    assert "call_counter" in finding.symbol


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_initial_exec_tls(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("initial_exec_tls", python_for(version)))
    assert codes == ["IK207", "IK302"]
    assert result.facts["tls"] == {"static": True, "filesz": 0, "memsz": 8}


def test_clash_alone_is_only_a_risk(built_fixtures, python_for):
    _, codes = codes_of(built_fixtures("clash_a", python_for("3.13")))
    assert codes == ["IK302", "IK303"]


def test_clash_between_two_scanned_extensions(built_fixtures, python_for):
    python = python_for("3.13")
    a, b = built_fixtures("clash_a", python), built_fixtures("clash_b", python)
    results = analyze_elf_files([a, b], Config(), closure=False)
    assert [sorted({f.code for f in r.findings} - {"IK309"}) for r in results] == [["IK302", "IK303", "IK304"]] * 2
    clash_a = next(f for f in results[0].findings if f.code == "IK304")
    assert clash_a.symbol == "interpkit_shared_counter" and b.name in clash_a.message
    # RTLD_DEEPBIND binds each copy to its own definition first (tests/copies measure it).
    assert results[0].verdicts[Backend.COPIES] is in_process("3.13")


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_mixed_init(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("mixed_init", python_for(version)))
    assert codes == ["IK101", "IK104", "IK302"]
    kinds = {i["symbol"]: i["kind"] for i in result.facts["init"]}
    assert kinds == {"PyInit_mixed_init": "multi-phase", "PyInit_mixed_init_legacy": "single-phase"}
    [single] = [f for f in result.findings if f.code == "IK101"]
    assert single.symbol == "PyInit_mixed_init_legacy"


def test_pybind11_module(built_fixtures, python_for):
    result, codes = codes_of(built_fixtures("pybind11_module"))
    # pybind11 3.x fills its slot array inside PyInit_ (.bss); the entries are read back from the
    # stores there. Built for 3.11 (no Py_mod_multiple_interpreters) the table has no such slot.
    assert codes == ["IK102", "IK203", "IK205", "IK206", "IK302", "IK307"]
    assert result.facts["generator"] == "pybind11"
    assert result.facts["generator_version"] == "12"  # __pybind11_internals_v12 (pybind11 3.1)
    assert result.facts["init"][0]["multiple_interpreters"] == "absent"
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.FAIL


@pytest.mark.torch
@pytest.mark.slow
def test_maskrcnn_torch_extension(built_fixtures, python_for, torch_dir):
    path = built_fixtures("maskrcnn_ops")
    results = analyze_elf_files([path], Config())
    ext = results[0]
    assert ext.path == path and ext.kind is FileKind.EXTENSION
    # torch headers bring pybind11 (internals v11), GILState, libstdc++ unique statics; the ops are
    # exported, and registered with the dispatcher (TORCH_LIBRARY + TORCH_LIBRARY_IMPL: IK208); it
    # needs libtorch_python.so, whose per-interpreter copy registers into libc10 again (IK308).
    # Its slot array is written inside PyInit_ (read back from the stores: built for 3.11, no
    # Py_mod_multiple_interpreters slot, IK102).
    assert sorted({f.code for f in ext.findings}) == ["IK102", "IK203", "IK205", "IK206", "IK208", "IK302",
                                                      "IK303", "IK307", "IK308"]
    assert ext.facts["generator_version"] == "11"
    assert ext.facts["generator"] == "pybind11"
    # libc10.so/libtorch*.so are found in torch/lib (loaded by `import torch` first), each scanned once.
    libraries = {r.path.name: r for r in results[1:]}
    assert {"libc10.so", "libtorch_cpu.so", "libtorch_python.so", "libgomp.so.1"} <= set(libraries)
    assert all(r.kind is FileKind.LIBRARY for r in libraries.values())
    assert "IK207" in {f.code for f in libraries["libgomp.so.1"].findings}
    assert len(results) == len({r.path.resolve() for r in results})


# ------------------------------------------------------------------ the verdict against CPython itself
_IMPORT_IN_ISOLATED = r"""
import _interpreters, sys
path, name = sys.argv[1], sys.argv[2]
interp = _interpreters.create("isolated")
err = _interpreters.exec(interp, f"import importlib.machinery as m, importlib.util as u\n"
    f"loader = m.ExtensionFileLoader({name!r}, {path!r})\n"
    f"spec = u.spec_from_file_location({name!r}, {path!r}, loader=loader)\n"
    f"u.module_from_spec(spec)")
print("ok" if err is None else "refused: " + err.msg)
"""


@pytest.mark.parametrize("name", ["single_phase_static", "multi_phase_isolated", "clean", "multi_phase_no_slot",
                                  "static_type", "gilstate", "initial_exec_tls", "mixed_init"])
def test_init_verdict_matches_cpython_313_isolated_import(built_fixtures, python_for, name):
    """IK101/IK102 say "CPython refuses this PyInit_ in an own-GIL subinterpreter": check with CPython."""
    python = python_for("3.13")
    path = built_fixtures(name, python)
    result, _ = codes_of(path)
    refused_by_rules = {f.symbol for f in result.findings if f.code in ("IK101", "IK102")}
    assert result.facts["init"], "every fixture here is an extension with a PyInit_"
    for init in result.facts["init"]:
        proc = subprocess.run([python, "-c", _IMPORT_IN_ISOLATED, str(path), init["module"]],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-500:]
        outcome = proc.stdout.strip()
        assert outcome.startswith("refused") == (init["symbol"] in refused_by_rules), (init["symbol"], outcome)


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_libpython_linked(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("libpython_linked", python_for(version)))
    assert codes == ["IK301"]  # and no IK302: the Py* symbols have a named provider
    assert result.facts["needed"] == [f"libpython{version}.so.1.0"] or f"libpython{version}.so.1.0" in result.facts["needed"]
    # The copies runtime replaces the DT_NEEDED by the interpreter's own libpython copy.
    assert result.verdicts[Backend.COPIES] is in_process(version) and result.verdicts[Backend.NAMESPACES] is in_namespaces(version)


def test_libpython_of_another_version_fails_everywhere(built_fixtures, python_for, tmp_path):
    """A cpython-312 file that needs libpython3.13 would load a second runtime: IK301 as an error."""
    built = built_fixtures("libpython_linked", python_for("3.13"))
    renamed = tmp_path / built.name.replace("cpython-313", "cpython-312")
    renamed.write_bytes(built.read_bytes())
    result, codes = codes_of(renamed)
    [finding] = [f for f in result.findings if f.code == "IK301"]
    assert finding.severity.label == "error" and "3.12" in finding.message
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.FAIL
    assert result.verdicts[Backend.NAMESPACES] is in_namespaces("3.12", Verdict.FAIL)
    assert result.verdicts[Backend.COPIES] is in_process("3.12", Verdict.FAIL)


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_rpath_absolute(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("rpath_absolute", python_for(version)))
    assert codes == ["IK302", "IK305"]
    assert result.facts["rpath"] == ["/opt/interpkit-build/lib"]


@pytest.mark.parametrize("version", ["3.11", "3.13"])
def test_pystate_registry(built_fixtures, python_for, version):
    result, codes = codes_of(built_fixtures("pystate_registry", python_for(version)))
    assert codes == ["IK101", "IK204", "IK302"]
    assert result.facts["init"][0]["m_size"] == 8  # state in the module object, found through the registry
