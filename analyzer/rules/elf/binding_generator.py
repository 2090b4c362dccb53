"""Binding generator detected, with its known multi-interpreter status.

## What it does
Names the tool that generated the extension (or library) from the marker strings it leaves
in `.rodata`: PyO3, nanobind, pybind11 (with its internals version from
`__pybind11_internals_vN`), Cython or cffi, and states what that tool is known to do with
multiple interpreters.

## Why is this bad?
- PyO3 raises `ImportError` when a module is imported in a subinterpreter.
- nanobind keeps one process-wide internals table, so a second interpreter reuses the first
  one's type objects.
- pybind11 before 3.0 (internals < v11) keeps one internals per process and uses single-phase
  init; 3.x keeps internals per interpreter when the module opts in with
  `py::multiple_interpreters::per_interpreter_gil()`.
- Cython 3.0 modules refuse a second interpreter ("Interpreter change detected") unless
  built with module state; cffi out-of-line modules go through `_cffi_backend`.
In every namespace each interpreter has its own copy, so none of this applies there.

## Example
```rust
#[pymodule] fn spam(m: &Bound<'_, PyModule>) -> PyResult<()> { ... }   // PyO3
```

## Use instead
Use a generator version that supports per-interpreter state and declare it (pybind11 3.x
`py::multiple_interpreters::per_interpreter_gil()`, Cython 3.1 with
`CYTHON_USE_MODULE_STATE`), or run the module under namespaces.

## References
- https://pyo3.rs/main/faq.html (subinterpreters)
- https://pybind11.readthedocs.io/en/stable/advanced/embedding.html#sub-interpreter-support
- https://cython.readthedocs.io/en/latest/src/userguide/extension_types.html
"""
from __future__ import annotations

from typing import Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK307",
    name="binding-generator",
    title="binding generator with a known multi-interpreter status",
    severity=Severity.INFO,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    verdicts={},
    fix=None,
    fixable=Fixable.NONE,
    doc=__doc__,
)

_FAILS_SUBINTERPRETERS = {Backend.SUBINTERPRETERS: Verdict.FAIL}


def _status(generator: str, version: str | None) -> tuple[str, dict]:
    if generator == "pyo3":
        return "PyO3 refuses to import in subinterpreters", _FAILS_SUBINTERPRETERS
    if generator == "nanobind":
        return "nanobind keeps one internals table per process", _FAILS_SUBINTERPRETERS
    if generator == "pybind11":
        if version and version.isdigit() and int(version) < 11:
            return f"pybind11 internals v{version} (< 3.0): one internals per process, single-phase init", {}
        label = f"internals v{version}" if version else "unknown internals version"
        return (f"pybind11 {label}: per-interpreter internals only when the module declares "
                "multiple_interpreters::per_interpreter_gil()"), {}
    if generator == "cython":
        label = f" {version}" if version else ""
        return f"Cython{label}: module-level state is process-global unless built with module state", {}
    if generator == "cffi":
        return "cffi: the module is created by _cffi_backend at run time", {}
    return generator, {}


def check(facts) -> Iterator[Finding]:
    if facts.generator in (None, "c", "c++"):
        return
    status, verdicts = _status(facts.generator, facts.generator_version)
    yield RULE.finding(facts.path, f"built with {facts.generator}: {status}", symbol=facts.generator,
                       verdicts=verdicts, data={"generator": facts.generator, "generator_version": facts.generator_version})
