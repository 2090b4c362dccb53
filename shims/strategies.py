"""From findings to a PatchPlan: which strategy fixes each hazard, and why the rest cannot be fixed.

One function per decision, each returning edits or a reason (docs/conventions.md convention 4). The
relink strategy rewrites binaries; the copies strategy changes how a module is loaded
(``interpkit.shims.private_copy``); the namespace guard (``interpkit.native.guest.guard``) is applied by the namespaces
runtime itself; rebuilding from source is ``interpkit.shims.rebuild`` and only applies to source input.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from interpkit.core.findings import Backend, FileKind, FileResult, Finding, Severity, Verdict
from interpkit.shims.hazards import Hazard, hazard_of
from interpkit.shims.plan import Edit, EditKind, PatchPlan
from interpkit.shims.relink import ElfState, plan_hide, plan_runpath, plan_unique, read_state


class Handling:
    """How one finding is dealt with (the per-finding column of the report)."""

    RELINK = "relink"                  # the binary is rewritten; the re-scan must not find it again
    COPIES = "per-interpreter copies"  # a private copy per interpreter (interpkit.shims.private_copy)
    GUARD = "namespace guard"          # interpkit.native.guest.guard, installed by the namespaces runtime
    UNFIXABLE = "unfixable"
    NOT_NEEDED = "not needed"          # informational, or affects no selected backend


@dataclass
class Context:
    backends: frozenset[Backend]
    search_dirs: tuple[Path, ...] = ()           # where vendored dependencies may be found
    clashes: dict[Path, set[str]] = field(default_factory=dict)   # file -> its clashing exports
    roots: tuple[Path, ...] = ()                  # files outside these are not ours to patch
    states: dict[Path, ElfState] = field(default_factory=dict)   # read once per file per plan


@dataclass(frozen=True)
class Decision:
    """What the plan does about one finding: its Handling, why it stays unfixable (for some
    backend), and the backends for which it is handled at load time (copies, guard), even when
    it stays unfixable for another backend. Returned per finding, so nothing is keyed by id()."""

    handling: str
    reason: str = ""
    load_time: frozenset[Backend] = frozenset()


def _unfixable(plan: PatchPlan, path: Path, finding: Finding, reason: str,
               load_time: frozenset[Backend] = frozenset()) -> Decision:
    plan.unfixable(path, finding, reason)
    return Decision(Handling.UNFIXABLE, reason, load_time)


def needs_attention(finding: Finding, backends: frozenset[Backend]) -> bool:
    """A finding matters when it forces fail/unknown on a selected backend, or is a warning or
    error about one (static TLS, private API: hazards whose cost depends on the deployment)."""
    if any(b in backends and v is not Verdict.OK for b, v in finding.verdicts):
        return True
    return finding.severity >= Severity.WARNING and bool(finding.backends & backends)


def clash_names(results: list[FileResult]) -> dict[Path, set[str]]:
    """Exports (other than PyInit_*) that each scanned file shares with another scanned file."""
    states: dict[Path, ElfState] = {}
    for fr in results:
        if fr.kind in (FileKind.EXTENSION, FileKind.LIBRARY):
            try:
                states[Path(fr.path)] = read_state(Path(fr.path))
            except Exception:  # noqa: BLE001 - an unreadable file has its own error entry
                continue
    owners: dict[str, set[Path]] = {}
    for path, state in states.items():
        for name in state.exports:
            if not name.startswith("PyInit_"):
                owners.setdefault(name, set()).add(path)
    out: dict[Path, set[str]] = {}
    for name, paths in owners.items():
        if len(paths) > 1:
            for path in paths:
                out.setdefault(path, set()).add(name)
    return out


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    resolved = Path(path).resolve()
    return any(resolved == r or r in resolved.parents for r in (Path(r).resolve() for r in roots))


def plan_finding(plan: PatchPlan, fr: FileResult, finding: Finding, ctx: Context) -> Decision:
    """Add the edits for one finding; returns what was decided for it."""
    path = Path(fr.path)
    hazard = hazard_of(finding)
    # A search path is cheap and safe to repair whatever its severity; the rest only when it matters.
    cheap = hazard is Hazard.UNRESOLVED_DEPENDENCY and bool(finding.backends & ctx.backends)
    if not (cheap or needs_attention(finding, ctx.backends)):
        return Decision(Handling.NOT_NEEDED)
    if ctx.roots and not _inside(path, ctx.roots):
        return _unfixable(plan, path, finding, "outside the input (a system library); patch or vendor it separately")
    if path not in ctx.states:
        ctx.states[path] = read_state(path)
    state = ctx.states[path]
    if hazard is Hazard.GNU_UNIQUE:
        for edit in plan_unique(path, state, None, finding.code):
            plan.add(path, edit)
        return Decision(Handling.RELINK)
    if hazard is Hazard.SYMBOL_CLASH:
        names = sorted(ctx.clashes.get(path, set()))
        if not names:
            names = list(finding.datum("symbols") or ([finding.symbol] if finding.symbol else []))
        edits, reason = [], None
        for name in names:
            more, reason = plan_hide(path, state, name, finding.code)
            if reason:
                break
            edits += more
        if reason:
            return _unfixable(plan, path, finding, reason)
        for edit in edits:
            plan.add(path, edit)
        return Decision(Handling.RELINK)
    if hazard is Hazard.LIBPYTHON_LINK:
        return _plan_libpython(plan, path, state, finding, ctx)
    if hazard is Hazard.UNRESOLVED_DEPENDENCY:
        edits, reason = plan_runpath(path, state, finding.code, ctx.search_dirs)
        for edit in edits:
            plan.add(path, edit)
        if reason:
            return _unfixable(plan, path, finding, reason)
        return Decision(Handling.RELINK)
    if hazard in (Hazard.SINGLE_PHASE, Hazard.STATIC_STATE):
        return _plan_copies(plan, path, fr, finding, ctx)
    if hazard is Hazard.RTLD_GLOBAL and Backend.NAMESPACES in ctx.backends:
        return Decision(Handling.GUARD, load_time=frozenset({Backend.NAMESPACES}))
    return _unfixable(plan, path, finding, unfixable_reason(hazard))


def _plan_libpython(plan: PatchPlan, path: Path, state: ElfState, finding: Finding, ctx: Context) -> Decision:
    """Under copies the right libpython differs per interpreter, so no single file can name it:
    each interpreter's private copy is relinked to that interpreter's libpython when it is made
    (interpkit.shims.private_copy.make_private_copy). A binary built for another Python cannot be relinked."""
    if finding.datum("built_for") and state.libpython:   # IK301 found a Python-version mismatch
        return _unfixable(plan, path, finding, f"built against {', '.join(state.libpython)} for another Python; "
                                               "relinking cannot change the C API it was compiled for (rebuild it)")
    if not any(name.startswith("PyInit_") for name in state.exports):
        return _unfixable(plan, path, finding, "a library that needs libpython is loaded by its dependents, not "
                                               "by an import hook, so it cannot get a copy per interpreter")
    plan.add(path, Edit(EditKind.PER_INTERPRETER_COPY, fr_module(path), code=finding.code))
    return Decision(Handling.COPIES, load_time=frozenset({Backend.COPIES}))


def _plan_copies(plan: PatchPlan, path: Path, fr: FileResult, finding: Finding, ctx: Context) -> Decision:
    """Copies give each interpreter fresh C statics where CPython would share one image's; they
    cannot help own-GIL subinterpreters, which refuse single-phase modules outright."""
    failing = {b for b, v in finding.verdicts if v is not Verdict.OK and b in ctx.backends} or set(finding.backends & ctx.backends)
    if fr.kind is not FileKind.EXTENSION:
        return _unfixable(plan, path, finding, "not an extension module: nothing imports it through a finder")
    plan.add(path, Edit(EditKind.PER_INTERPRETER_COPY, fr.module or fr_module(path), code=finding.code))
    copies = frozenset({Backend.COPIES})
    if Backend.SUBINTERPRETERS in failing:
        return _unfixable(plan, path, finding, "own-GIL subinterpreters refuse this module before any import hook "
                                               "runs (port it to multi-phase init with module state); per-interpreter "
                                               "copies fix legacy subinterpreters and the copies backend only", copies)
    return Decision(Handling.COPIES, load_time=copies)


def fr_module(path: Path) -> str:
    return Path(path).name.split(".", 1)[0]


def unfixable_reason(hazard: Hazard) -> str:
    return {
        Hazard.PYO3: "PyO3 modules refuse a second interpreter by design (ImportError from PyO3 itself); "
                     "no binary patch changes that",
        Hazard.STATIC_TLS: "initial-exec TLS is compiled into the code and allocated from the static TLS block; "
                           "rebuild from source with -ftls-model=global-dynamic, or raise glibc.rtld.optional_static_tls",
        Hazard.MISSING_INTERPRETER_SLOT: "the module does not declare Py_mod_multiple_interpreters; declaring it is a "
                                         "source change (and a promise the code must keep)",
        Hazard.GILSTATE: "PyGILState_* assumes one interpreter per process; the calls must be replaced in the source",
        Hazard.RTLD_GLOBAL: "RTLD_GLOBAL loads are only neutralised inside namespaces (interpkit.native.guest.guard)",
    }.get(hazard, "no shim fixes this hazard")
