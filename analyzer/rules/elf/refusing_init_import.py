"""Extension imports, while initialising, an extension module that isolated interpreters refuse.

## What it does
Flags an extension that declares own-GIL support but whose init imports another extension module of the scanned tree that
cannot load in an own-GIL subinterpreter, and names that module and why: numpy C-API
consumers (`import_array()` imports `numpy._core._multiarray_umath`), Cython `cimport`s of
other compiled modules, a literal passed to `PyImport_ImportModule`. The imported names are
read from the binary's read-only data and resolved against the extension modules of the scan;
the chain is followed (A imports B imports C).

## Why is this bad?
The module's own `Py_mod_multiple_interpreters` slot may say
`Py_MOD_PER_INTERPRETER_GIL_SUPPORTED`, but its exec function fails as soon as the import it
makes is refused, so CPython refuses the module too. The declaration alone would predict `ok`.

## Example
```c
static int exec(PyObject *m) { import_array(); return 0; }   /* numpy refuses: so does this */
static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED}, {0, NULL}};
```

## Use instead
Nothing to fix in this module: it loads once the module it imports supports isolated
interpreters. Until then, run it in the `namespaces` or `copies` backend.

## Known problems
A name the binary holds but imports only later (inside a function) is counted as an init-time
import. Names of modules outside the scanned tree are not resolved.

## References
- https://docs.python.org/3/c-api/module.html#c.Py_mod_multiple_interpreters
- https://numpy.org/doc/stable/reference/c-api/array.html#c.import_array
"""
from __future__ import annotations

from typing import Iterable, Iterator

from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.plumbing.modules import enclosing_packages
from interpkit.analyzer.registry import Fixable, Rule

RULE = Rule(
    code="IK105",
    name="refusing-init-import",
    title="extension imports at init a module that isolated interpreters refuse",
    severity=Severity.ERROR,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.FAIL},
    fix=None,
    fixable=Fixable.NONE,
    doc=__doc__,
)

_DECLARED = {
    "absent": "declares no Py_mod_multiple_interpreters slot (shared GIL only)",
    "not-supported": "declares Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED",
    "supported": "declares Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED (shared GIL only)",
}
_MAX_DEPTH = 8


def _dotted(facts, init_module: str) -> str:
    packages, _ = enclosing_packages(facts.path.parent)
    return ".".join(reversed([init_module, *packages]))


def _own_refusal(init) -> tuple[Verdict, str] | None:
    """(FAIL or UNKNOWN, why) for one init function judged alone; None when it declares own-GIL support."""
    if init.kind.value == "single-phase":
        return Verdict.FAIL, "uses single-phase init"
    if init.kind.value != "multi-phase":
        return Verdict.UNKNOWN, "has an init kind that cannot be read"
    declared = init.multiple_interpreters
    if declared in _DECLARED:
        return Verdict.FAIL, _DECLARED[declared]
    if declared != "per-interpreter-gil-supported":
        return Verdict.UNKNOWN, "has a declaration that cannot be read"
    return None


def _imported(facts, names: dict[str, tuple], own: set[str]) -> list[str]:
    """Extension modules of the scan this binary names in its read-only data."""
    out = []
    for name in facts.init_imports.names:
        if name in own:
            continue
        if name not in names and facts.init_imports.numpy_capsule and ".core." in name:
            name = name.replace(".core.", "._core.")   # numpy 1.x headers name the 2.x module this way
        if name in names and name not in own and name not in out:
            out.append(name)
    return out


def check_set(all_facts: Iterable) -> Iterator[Finding]:
    extensions = [f for f in all_facts if f.is_extension]
    modules: dict[str, tuple] = {}            # dotted name -> (facts, init)
    for facts in extensions:
        for init in facts.init.inits:
            modules.setdefault(_dotted(facts, init.module), (facts, init))
    refusal = {name: _own_refusal(init) for name, (_facts, init) in modules.items()}
    imports = {}
    for facts in extensions:
        own = {_dotted(facts, i.module) for i in facts.init.inits}
        imports[str(facts.path)] = _imported(facts, modules, own)

    def blocking(name: str, depth: int, seen: frozenset) -> tuple[Verdict, str] | None:
        """Why importing `name` fails (its own refusal first, then what it imports)."""
        own = refusal.get(name)
        if own is not None:
            return own[0], f"{name} {own[1]}"
        if depth >= _MAX_DEPTH:
            return None
        facts = modules[name][0]
        for dependency in imports.get(str(facts.path), ()):
            if dependency in seen:
                continue
            found = blocking(dependency, depth + 1, seen | {dependency})
            if found is not None:
                return found[0], f"{name} imports {found[1]}"
        return None

    for facts in extensions:
        if any(_own_refusal(init) is not None for init in facts.init.inits):
            continue   # refused on its own account already (IK101/IK102/IK103 say why)
        for dependency in imports[str(facts.path)]:
            found = blocking(dependency, 0, frozenset({dependency, *(_dotted(facts, i.module) for i in facts.init.inits)}))
            if found is None:
                continue
            verdict, why = found
            yield RULE.finding(facts.path, f"imports {dependency} while initialising: refused because {why}",
                               symbol=dependency, verdicts={Backend.SUBINTERPRETERS: verdict},
                               severity=Severity.ERROR if verdict is Verdict.FAIL else Severity.WARNING,
                               data={"imports": dependency, "why": why})
            if verdict is Verdict.FAIL:
                break


def check(facts) -> Iterator[Finding]:
    """Nothing per file: the imported modules are resolved over the whole scan (check_set)."""
    return iter(())
