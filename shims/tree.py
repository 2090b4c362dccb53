"""Patch one tree in place: plan edits from its findings, apply them, re-scan and re-verify.

The tree is a private staging copy made by ``interpkit.shims.apply`` (folders, single files)
or by ``interpkit.shims.wheel`` (an unpacked wheel); this module never sees the user's input.
A patch is planned from what the files *are*, so a patched tree plans nothing the second time
(``_check_converged`` proves it after every write).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from interpkit.analyzer.config import Config
from interpkit.core.errors import InputError, InterpkitError
from interpkit.core.findings import Backend, FileKind, FileResult, Finding, Severity, VERDICT_RANK, Verdict
from interpkit.shims.plan import AboutFinding, EditKind, FilePlan, PatchPlan
from interpkit.shims.strategies import Context, Decision, Handling, clash_names, needs_attention, plan_finding

COPIES_MANIFEST = "interpkit-copies.json"


class PatchError(InterpkitError):
    """The patch could not be made or did not hold (input changed, result did not converge)."""


# --------------------------------------------------------------------------- results

@dataclass
class FindingOutcome(AboutFinding):
    finding: Finding      # the scan's finding itself; code, symbol and message are read from it
    handling: str
    after: str            # "fixed", "remaining", "handled at load time", "unfixable", "not needed"
    reason: str = ""
    handled_for: tuple[str, ...] = ()     # backends for which it is handled at load time

    def to_json(self) -> dict:
        out = {"code": self.code, "symbol": self.symbol, "message": self.message,
               "handling": self.handling, "after": self.after}
        if self.handled_for:
            out["handled_at_load_time_for"] = list(self.handled_for)
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class FileOutcome:
    relative: str                                  # path inside the input (or the input's name)
    kind: str
    module: str | None
    plan: FilePlan
    applied: list[str] = field(default_factory=list)
    findings: list[FindingOutcome] = field(default_factory=list)
    verdicts_before: dict[str, str] = field(default_factory=dict)
    verdicts_after: dict[str, str] = field(default_factory=dict)
    verify: dict[str, dict] = field(default_factory=dict)   # backend -> {"before": status, "after": status}

    @property
    def unfixed(self) -> list[FindingOutcome]:
        return [f for f in self.findings if f.after in ("unfixable", "remaining")]

    def to_json(self) -> dict:
        return {"path": self.relative, "kind": self.kind, "module": self.module,
                "edits": self.plan.to_json()["edits"], "applied": self.applied,
                "findings": [f.to_json() for f in self.findings],
                "verdicts": {b: {"before": self.verdicts_before.get(b), "after": self.verdicts_after.get(b)}
                             for b in sorted(set(self.verdicts_before) | set(self.verdicts_after))},
                "verify": self.verify}


@dataclass
class Options:
    backends: frozenset[Backend] = frozenset(Backend)
    interpreters: int = 2
    check: bool = False
    dry_run: bool = False
    verify: bool = True
    timeout: float = 60.0
    config: Config = field(default_factory=lambda: Config(follow_imports=False))


# --------------------------------------------------------------------------- the tree patcher

def _scan(root: Path, config: Config) -> list[FileResult]:
    from interpkit.analyzer.scan import scan_paths

    report = scan_paths([root], config, only="elf")
    return report.files


def _relative(path: Path, root: Path) -> str:
    try:
        rel = Path(path).resolve().relative_to(root.resolve())
        return str(rel) if str(rel) != "." else Path(path).name
    except ValueError:
        return str(path)


def _search_dirs(root: Path) -> tuple[Path, ...]:
    """Folders of the tree that hold shared objects (a wheel's `.libs`, the package itself)."""
    if root.is_file():
        return (root.parent,)
    dirs = sorted({p.parent for p in root.rglob("*.so*") if p.is_file()})
    return tuple(dirs)


def patch_tree(root: Path, options: Options, *, display_root: Path | None = None) -> tuple[list[FileOutcome], bool]:
    """Plan and (unless dry-run/check) apply the edits to every ELF file under root, in place.

    root is a private staging copy. Returns the per-file outcomes and whether any file changed.
    """
    from interpkit.shims.relink import apply_binary_edits

    root = Path(root)
    before = _scan(root, options.config)
    unreadable = [fr for fr in before if fr.kind is FileKind.ERROR and _inside(Path(fr.path), root)]
    if root.is_file() and unreadable:
        # an input file that cannot be read is unusable input (exit 2), not a failed patch
        raise InputError(f"cannot patch {root.name} ({unreadable[0].error})")
    ours = [fr for fr in before if _inside(Path(fr.path), root) and fr.kind is not FileKind.ERROR]
    ctx = Context(backends=options.backends, search_dirs=_search_dirs(root),
                  clashes=clash_names(before), roots=(root,))
    plan = PatchPlan()
    # One decision per finding, kept beside it (same order as fr.findings).
    decisions: dict[Path, list[Decision]] = {}
    for fr in ours:
        plan.for_file(Path(fr.path))
        decisions[Path(fr.path)] = [plan_finding(plan, fr, finding, ctx) for finding in fr.findings]
    # A finding in a system dependency reached through the closure is reported against the file
    # that needs it, so the user sees why it stays.
    outcomes: dict[Path, FileOutcome] = {}
    for fr in ours:
        path = Path(fr.path)
        outcomes[path] = FileOutcome(_relative(path, root), fr.kind.value, fr.module, plan.for_file(path),
                                     verdicts_before={b.value: fr.verdicts.get(b, Verdict.UNKNOWN).value for b in options.backends})
    if options.verify:
        _verify(outcomes, ours, options, "before")
    changed = False
    if not (options.dry_run or options.check):
        for path, outcome in outcomes.items():
            edits = outcome.plan.binary_edits
            if edits:
                outcome.applied = apply_binary_edits(path, edits)
                changed = changed or bool(outcome.applied)
        _write_copies_manifest(root, outcomes, every_extension=Backend.COPIES in options.backends)
    after = _scan(root, options.config) if changed else before
    after_by_path = {Path(fr.path).resolve(): fr for fr in after}
    for fr in ours:
        path = Path(fr.path)
        outcome = outcomes[path]
        again = after_by_path.get(path.resolve(), fr)
        outcome.verdicts_after = {b.value: again.verdicts.get(b, Verdict.UNKNOWN).value for b in options.backends}
        remaining = {(f.code, f.symbol) for f in again.findings}
        remaining_codes = {f.code for f in again.findings}
        for finding, decision in zip(fr.findings, decisions[path]):
            how = decision.handling
            if how == Handling.NOT_NEEDED:
                state = "not needed"
            elif how == Handling.UNFIXABLE:
                state = "unfixable"
            elif how in (Handling.COPIES, Handling.GUARD):
                state = "handled at load time"
            elif options.dry_run or options.check:
                state = "would be fixed"
            elif (finding.code, finding.symbol) in remaining or (finding.code in remaining_codes and finding.symbol is None):
                state = "remaining"
            else:
                state = "fixed"
            load_time = tuple(sorted(b.value for b in decision.load_time))
            if how == Handling.UNFIXABLE and load_time:
                how = f"{Handling.COPIES if 'copies' in load_time else Handling.GUARD} ({', '.join(load_time)} only)"
            outcome.findings.append(FindingOutcome(finding, how, state, decision.reason, load_time))
        outcome.verdicts_after = _effective_verdicts(again, outcome, options)
        # New problems the patch introduced would be a bug in the patcher: report them, never hide them.
        for finding in again.findings:
            if (finding.code, finding.symbol) not in {(f.code, f.symbol) for f in fr.findings} and \
                    needs_attention(finding, options.backends):
                outcome.findings.append(FindingOutcome(finding, "introduced by the patch", "remaining"))
    if changed:
        _check_converged(root, options)
        if options.verify:
            _verify(outcomes, [after_by_path.get(Path(fr.path).resolve(), fr) for fr in ours], options, "after")
    elif options.verify and not (options.dry_run or options.check):
        for outcome in outcomes.values():
            for backend, entry in outcome.verify.items():
                entry.setdefault("after", entry.get("before"))
        _verify_copies_after(outcomes, options)
    broken = [FileOutcome(_relative(Path(fr.path), root), fr.kind.value, None, FilePlan(Path(fr.path)),
                          findings=[FindingOutcome(_unreadable(fr), Handling.UNFIXABLE, "unfixable",
                                                   "the file cannot be read as ELF; it was copied unchanged")])
              for fr in unreadable]
    return list(outcomes.values()) + broken, changed


def _unreadable(fr: FileResult) -> Finding:
    """An unreadable file has no finding of its own (its scan entry is an error): this one
    stands for it in the patch report, under the report's code "error"."""
    return Finding("error", Severity.ERROR, fr.error or "unreadable", Path(fr.path))


def _effective_verdicts(after: FileResult, outcome: FileOutcome, options: Options) -> dict[str, str]:
    """The re-scan's verdicts, except that findings handled at load time (copies, guard) no
    longer count against the backend they are handled for."""
    rank = VERDICT_RANK
    out = {}
    for backend in options.backends:
        handled = {(f.code, f.symbol) for f in outcome.findings if backend.value in f.handled_for}
        worst = Verdict.OK
        for finding in after.findings:
            if (finding.code, finding.symbol) in handled:
                continue
            for b, v in finding.verdicts:
                if b is backend and rank[v] > rank[worst]:
                    worst = v
        out[backend.value] = worst.value
    return out


def _inside(path: Path, root: Path) -> bool:
    resolved, root = Path(path).resolve(), Path(root).resolve()
    return resolved == root or root in resolved.parents


def _check_converged(root: Path, options: Options) -> None:
    """Re-plan the patched tree: a correct patch leaves nothing for a second run to do."""
    results = _scan(root, options.config)
    ctx = Context(backends=options.backends, search_dirs=_search_dirs(root),
                  clashes=clash_names(results), roots=(root,))
    plan = PatchPlan()
    for fr in results:
        if _inside(Path(fr.path), root):
            for finding in fr.findings:
                plan_finding(plan, fr, finding, ctx)
    left = {str(p): [e.describe() for e in fp.binary_edits] for p, fp in plan.files.items() if fp.binary_edits}
    if left:
        raise PatchError(f"cannot patch {root.name} (a second pass would still change {left})")


def _write_copies_manifest(root: Path, outcomes: dict[Path, FileOutcome], every_extension: bool = False) -> None:
    """Modules that need a private copy per interpreter, for interpkit.shims.private_copy.install_from_manifest
    and the copies runtime (``CopiesRuntime(manifest=...)``), which needs every extension relinked
    to its interpreter's libpython copy (`every_extension`)."""
    modules = {}
    for path, outcome in outcomes.items():
        if every_extension and outcome.kind == FileKind.EXTENSION.value:
            modules[outcome.module or path.name.split(".", 1)[0]] = outcome.relative
        for edit in outcome.plan.edits:
            if edit.kind is EditKind.PER_INTERPRETER_COPY:
                modules[outcome.module or edit.target] = outcome.relative
    if modules:
        folder = root if root.is_dir() else root.parent
        text = json.dumps({"schema": "interpkit-copies/1", "modules": dict(sorted(modules.items()))}, indent=2) + "\n"
        (folder / COPIES_MANIFEST).write_text(text)


# --------------------------------------------------------------------------- re-verification

def _verify(outcomes: dict[Path, FileOutcome], results: list[FileResult], options: Options, when: str) -> None:
    """Probe each extension in the real runtimes; copies are probed with and without the hook."""
    from interpkit.analyzer.verification.verify import verify_results

    extensions = [fr for fr in results if fr.kind is FileKind.EXTENSION]
    if not extensions:
        return
    by_path = {Path(o_path).resolve(): o for o_path, o in outcomes.items()}
    for backend in sorted(options.backends & {Backend.NAMESPACES, Backend.SUBINTERPRETERS}, key=str):
        try:
            rows = verify_results(extensions, backend, interpreters=options.interpreters, timeout=options.timeout)
        except InterpkitError as exc:
            for fr in extensions:
                by_path[Path(fr.path).resolve()].verify.setdefault(backend.value, {})[when] = f"skipped ({exc})"
            continue
        for row in rows:
            outcome = by_path.get(Path(row.path).resolve())
            if outcome is None:
                continue
            status = row.status if row.status != "ok" or row.observed is Verdict.OK else "ok, shared state"
            if row.status == "skipped":
                status = f"skipped ({row.message})"
            outcome.verify.setdefault(backend.value, {})[when] = status
    if Backend.COPIES in options.backends:
        for fr in extensions:
            outcome = by_path[Path(fr.path).resolve()]
            if any(e.kind is EditKind.PER_INTERPRETER_COPY for e in outcome.plan.edits) and when == "before":
                from interpkit.shims.private_copy import probe_legacy

                result = probe_legacy(Path(fr.path), fr.module or outcome.module, options.interpreters,
                                      with_copies=False, timeout=options.timeout)
                outcome.verify.setdefault("copies", {})["before"] = result["status"]
    if when == "after":
        _verify_copies_after(outcomes, options)


def _verify_copies_after(outcomes: dict[Path, FileOutcome], options: Options) -> None:
    if Backend.COPIES not in options.backends or not options.verify:
        return
    from interpkit.shims.private_copy import probe_legacy

    for path, outcome in outcomes.items():
        if outcome.kind == FileKind.EXTENSION.value and any(e.kind is EditKind.PER_INTERPRETER_COPY for e in outcome.plan.edits):
            result = probe_legacy(Path(path), outcome.module, options.interpreters, with_copies=True, timeout=options.timeout)
            outcome.verify.setdefault("copies", {})["after"] = result["status"]
