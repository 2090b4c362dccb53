"""Op-library facts read from binaries (TORCH_LIBRARY*, c10 registries) and the rules on them,
checked against what torch itself does when the same library is loaded twice."""
from __future__ import annotations

import shutil
import sys

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.analyzer.elf.facts import facts_for
from interpkit.analyzer.elf.torch_library import DEF, FRAGMENT, IMPL, Registration, _parse_init_name
from interpkit.core.findings import Backend, FileKind, Severity, Verdict

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("identifier,expected", [
    ("TORCH_LIBRARY_init_roi_ops", Registration(DEF, "roi_ops")),
    ("TORCH_LIBRARY_FRAGMENT_init_my_ns_3", Registration(FRAGMENT, "my_ns")),
    ("TORCH_LIBRARY_IMPL_init_my_ns_CompositeExplicitAutograd_12", Registration(IMPL, "my_ns", "CompositeExplicitAutograd")),
    ("STABLE_TORCH_LIBRARY_IMPL_init_vision_CPU_0", Registration(IMPL, "vision", "CPU", "stable")),
    ("TORCH_LIBRARY_IMPL_init_nokey_0", None),
])
def test_init_function_names_give_kind_namespace_and_key(identifier, expected):
    assert _parse_init_name(identifier) == expected


def test_op_library_without_pyinit_is_a_library_that_registers_its_namespace(built_fixtures, torch_dir):
    path = built_fixtures("maskrcnn_oplib")
    facts = facts_for(path)
    assert not facts.is_extension
    assert {(r.kind, r.namespace, r.dispatch_key) for r in facts.op_library.registrations} == {
        (DEF, "maskrcnn_oplib", None), (FRAGMENT, "maskrcnn_oplib", None), (IMPL, "maskrcnn_oplib", "CPU")}
    [result] = analyze_elf_files([path], Config(), closure=False)
    assert result.kind is FileKind.LIBRARY
    assert result.facts["op_library"]["namespaces"] == ["maskrcnn_oplib"]
    [finding] = [f for f in result.findings if f.code == "IK208"]
    assert finding.severity is Severity.WARNING and finding.datum("namespaces") == ("maskrcnn_oplib",)
    assert "Only a single TORCH_LIBRARY" in finding.message
    assert result.verdicts[Backend.COPIES] is Verdict.FAIL
    assert result.verdicts[Backend.SUBINTERPRETERS] is Verdict.FAIL
    assert result.verdicts[Backend.NAMESPACES] is Verdict.OK


def test_extension_that_also_registers_ops(built_fixtures, torch_dir):
    path = built_fixtures("maskrcnn_ops")
    facts = facts_for(path)
    assert facts.is_extension
    assert facts.op_library.defined_namespaces == ("maskrcnn_ops",)
    assert {r.dispatch_key for r in facts.op_library.registrations if r.kind == IMPL} == {"CPU"}


def test_a_second_copy_against_one_libtorch_aborts_as_ik208_predicts(built_fixtures, torch_dir, tmp_path):
    """The copies verdict, observed: a renamed copy of the op library in the same process."""
    from interpkit.native import sandbox

    path = built_fixtures("maskrcnn_oplib")
    copy = tmp_path / "maskrcnn_oplib_copy.so"
    shutil.copyfile(path, copy)
    script = ("import torch\n"
              f"torch.ops.load_library({str(path)!r})\n"
              f"torch.ops.load_library({str(copy)!r})\n")
    run = sandbox.run([sys.executable, "-c", script], limits=sandbox.Limits(timeout_s=240))
    assert run.ending.signal == "SIGABRT", run.ending.describe()
    assert "Only a single TORCH_LIBRARY can be used to register the namespace maskrcnn_oplib" in run.ending.stderr_tail


def test_libtorch_python_registers_into_libc10s_registry_and_libtorch_cpu_owns_the_dispatcher(torch_dir):
    python = facts_for(torch_dir / "lib" / "libtorch_python.so")
    assert "c10::impl::PyInterpreterHooksRegistry" in python.op_library.registries
    cpu = facts_for(torch_dir / "lib" / "libtorch_cpu.so")
    # libtorch_cpu defines torch::Library itself: it owns the dispatcher, it does not register into another's.
    assert not cpu.op_library.registrations
    results = analyze_elf_files([torch_dir / "lib" / "libtorch_python.so"], Config(), closure=False)
    [ik209] = [f for f in results[0].findings if f.code == "IK209"]
    assert ik209.symbol == "PyInterpreterHooksRegistry" and "Key already registered" in ik209.message
    assert dict(ik209.verdicts) == {Backend.COPIES: Verdict.FAIL}


def test_binaries_without_torch_have_no_op_library_facts(built_fixtures):
    facts = facts_for(built_fixtures("clean"))
    assert not facts.op_library.registrations and not facts.op_library.registries
    assert "op_library" not in facts.summary()


@pytest.mark.integration  # loads torch in two namespaced interpreters
def test_verify_loads_an_op_library_as_torch_does_in_each_interpreter(built_fixtures, torch_dir):
    from interpkit.analyzer.verification.verify import verify_results

    path = built_fixtures("maskrcnn_oplib")
    files = analyze_elf_files([path], Config())
    [row] = verify_results(files, Backend.NAMESPACES, interpreters=2, timeout=300)
    assert (row.status, row.observed, row.agrees) == ("ok", Verdict.OK, True), row.message
    loads = [s for s in row.outcome.steps if s["step"] == "import"]
    assert [s["interpreter"] for s in loads] == [0, 1]
    for step in loads:   # its own libtorch per namespace: all three operators registered in each
        assert step["op_library"]["registered"] == 3 and step["op_library"]["namespaces"] == ["maskrcnn_oplib"]
        assert step["op_library"]["call"]["returned"] == "Tensor"
    [other] = verify_results(files, Backend.SUBINTERPRETERS, interpreters=2, timeout=300)
    assert other.status == "skipped" and "op libraries load through torch" in other.message


@pytest.mark.integration  # the copies runtime: one renamed libpython per interpreter
def test_verify_observes_the_copies_failure_ik209_predicts(built_fixtures, torch_dir):
    """Each copies interpreter loads its own libtorch_python against the one libtorch: the c10
    registry refuses the second PyInterpreterHooks, so the op library cannot load there."""
    from interpkit.analyzer.verification.verify import verify_results

    files = analyze_elf_files([built_fixtures("maskrcnn_oplib")], Config())
    [row] = verify_results(files, Backend.COPIES, interpreters=2, timeout=300)
    assert row.predicted is Verdict.FAIL
    assert (row.status, row.observed, row.agrees) == ("import_error", Verdict.FAIL, True), row.message
    assert "Key already registered with the same priority: PyInterpreterHooks" in row.message
