"""Every extension fixture probed under the namespaces backend with 2 and 4 interpreters.

The expected outcome of each fixture is written down here and asserted: a namespace has its
own copy of every global, so the state hazards load and stay per interpreter ("ok", nothing
shared), while the hostile fixtures crash, hang or fail as their fixture.toml says. A
fixture added later without an entry is skipped with that reason.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from interpkit.analyzer.plumbing.modules import module_location
from fixtures.build import FixtureUnavailable, build_fixture
from interpkit.native.sandbox.probe import probe_module
from tests.runtime.runtime_helpers import REPO_ROOT, run_python

def _is_module(folder) -> bool:
    """An importable extension; an op library (`kind = "op-library"`: no PyInit_, loaded by
    torch.ops.load_library) is probed with --op-library by the verify tests instead."""
    return tomllib.loads((folder / "fixture.toml").read_text()).get("kind", "module") == "module"


FIXTURES = sorted(p.name for p in (REPO_ROOT / "fixtures" / "ext").iterdir()
                  if (p / "fixture.toml").is_file() and _is_module(p))

# fixture -> (accepted statuses, signal, preimport)
EXPECTED: dict[str, tuple[frozenset[str], str | None, tuple[str, ...]]] = {
    **{name: (frozenset({"ok"}), None, ()) for name in (
        "bigstate", "clash_a", "clash_b", "clean", "coldstate", "gilstate", "gnu_unique_cpp",
        "initial_exec_tls", "libpython_linked", "mixed_init", "multi_phase_isolated",
        "multi_phase_no_slot", "pybind11_module", "pystate_registry", "rpath_absolute",
        "single_phase_static", "static_type", "empty_slot_table", "init_import_provider",
        "modexport_isolated", "once_per_process", "pybind11_isolated", "runtime_slots")},
    # Probed alone, its exec slot's import of ikpkg.init_import_provider finds no such package
    # (tests/elf/test_init_imports.py builds the package); and on 3.11 the stub PyInit_ kept
    # beside PyModExport_ (PEP 793, 3.15) returns NULL: both refuse the import itself.
    "init_import_consumer": (frozenset({"import_error"}), None, ()),
    "modexport_stub_init": (frozenset({"import_error"}), None, ()),
    # Its DT_NEEDED libc10.so resolves once torch is loaded in the same namespace; the
    # probe sees the missing library and imports torch first by itself.
    "maskrcnn_ops": (frozenset({"ok"}), None, ()),
    "hostile_abort": (frozenset({"crash"}), "SIGABRT", ()),
    "hostile_segv": (frozenset({"crash"}), "SIGSEGV", ()),
    "hostile_exit": (frozenset({"error"}), None, ()),
    "hostile_loop": (frozenset({"hang"}), None, ()),
    # Under the probe's address-space cap the allocation fails: MemoryError or a crash.
    "hostile_alloc": (frozenset({"import_error", "crash"}), None, ()),
}
SLOW = {"hostile_loop", "maskrcnn_ops"}


def _params():
    for name in FIXTURES:
        marks = [pytest.mark.slow] if name in SLOW else []
        if name == "maskrcnn_ops":
            marks.append(pytest.mark.torch)
        for n in (2, 4):
            yield pytest.param(name, n, marks=marks, id=f"{name}-{n}")


def _built(name: str) -> tuple[str, Path]:
    try:
        so = build_fixture(name)
    except FixtureUnavailable as exc:
        pytest.skip(str(exc))
    location = module_location(Path(so))
    assert location is not None
    return location


def test_every_module_fixture_has_an_expected_outcome():
    """A fixture added without its expected namespaces outcome fails here, instead of being skipped."""
    assert sorted(set(FIXTURES) - set(EXPECTED)) == []


@pytest.mark.parametrize(("name", "n"), [p for p in _params() if p.values[0] in EXPECTED])
def test_fixture_outcome_under_namespaces(name, n):
    statuses, signal_name, preimport = EXPECTED[name]
    module, path = _built(name)
    timeout = 10 if statuses == {"hang"} else 240
    outcome = probe_module(module, path, interpreters=n, timeout=timeout, preimport=preimport)
    assert outcome.status in statuses, outcome
    if signal_name:
        assert outcome.signal == signal_name
    if outcome.status == "ok":
        steps = [step["step"] for step in outcome.steps]
        imported = [step for step in outcome.steps if step["step"] == "import" and step["ok"]]
        assert len(imported) == n and steps.count("smoke") == n
        assert "destroy" in steps and steps[-2:] == ["use_after_destroy", "close"]
        assert outcome.shared_state == ()
        if name == "maskrcnn_ops":
            assert {"step": "preimport", "module": "torch", "automatic": True,
                    "ok": True} in outcome.steps
    else:
        assert outcome.steps[-1]["step"] == "import"


COUNTERS = ["single_phase_static", "clash_a", "clash_b", "gnu_unique_cpp", "pystate_registry"]


def test_c_globals_count_separately_in_each_namespace():
    # bump() increments a C-level counter (a static, an exported or GNU_UNIQUE object).
    # Three bumps in interpreter 0 leave interpreter 1's count at zero: each namespace
    # loaded its own copy of the library.
    located = {name: _built(name) for name in COUNTERS}
    code = f"""
import json, sys
from interpkit.native import Runtime
located = {dict((k, (m, str(p))) for k, (m, p) in located.items())!r}
paths = sorted({{p for _, p in located.values()}})
with Runtime(2, sys_path=[*paths, *sys.path], timeout=120) as runtime:
    counts = {{}}
    for name, (module, _) in located.items():
        for _ in range(3):
            first = runtime.eval(0, f"__import__({{module!r}}).bump()")
        counts[name] = [first, runtime.eval(1, f"__import__({{module!r}}).bump()")]
print(json.dumps(counts))
"""
    result = run_python(code, timeout=240)
    assert result.returncode == 0, result.stderr[-1500:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts == {name: [3, 1] for name in COUNTERS}
