"""Copy the input, patch the copy in a temp dir, re-scan and re-verify it, then rename it into place.

The input is never written: it is hashed before and after, and a difference is an error. The
staging folder lives inside the output folder, so the final ``os.replace`` is a rename on one
file system (readers see the old output or the new one, never half of it). A patch is planned
from what the file *is*, so patching a patched file plans nothing and writes the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from interpkit.analyzer.config import Config
from interpkit.core.errors import InputError, InterpkitError
from interpkit.core.findings import Backend, FileKind, FileResult, Verdict
from interpkit.shims.plan import EditKind, FilePlan, PatchPlan
from interpkit.shims.strategies import Context, Handling, clash_names, needs_attention, plan_finding

log = logging.getLogger(__name__)

COPIES_MANIFEST = "interpkit-copies.json"


class PatchError(InterpkitError):
    """The patch could not be made or did not hold (input changed, result did not converge)."""


# --------------------------------------------------------------------------- results

@dataclass
class FindingOutcome:
    code: str
    symbol: str | None
    message: str
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
class PatchOutcome:
    input: Path
    output: Path | None
    files: list[FileOutcome] = field(default_factory=list)
    input_sha256: str = ""
    output_sha256: str | None = None
    changed: bool = False
    notes: list[str] = field(default_factory=list)
    rebuild: list[dict] = field(default_factory=list)   # per member: codes the rebuild flags removed / kept

    @property
    def unfixed(self) -> list[tuple[FileOutcome, FindingOutcome]]:
        return [(f, x) for f in self.files for x in f.unfixed]

    def to_json(self) -> dict:
        return {"input": str(self.input), "output": str(self.output) if self.output else None,
                "input_sha256": self.input_sha256, "output_sha256": self.output_sha256,
                "changed": self.changed, "files": [f.to_json() for f in self.files], "notes": self.notes,
                **({"rebuild": self.rebuild} if self.rebuild else {})}


@dataclass
class Options:
    backends: frozenset[Backend] = frozenset(Backend)
    interpreters: int = 2
    check: bool = False
    dry_run: bool = False
    verify: bool = True
    timeout: float = 60.0
    config: Config = field(default_factory=lambda: Config(follow_imports=False))


# --------------------------------------------------------------------------- hashing

def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's relative names and contents in a stable order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


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
        raise PatchError(f"cannot patch {root.name} ({unreadable[0].error})")
    ours = [fr for fr in before if _inside(Path(fr.path), root) and fr.kind is not FileKind.ERROR]
    ctx = Context(backends=options.backends, search_dirs=_search_dirs(root),
                  clashes=clash_names(before), roots=(root,))
    plan = PatchPlan()
    handling: dict[int, str] = {}
    for fr in ours:
        plan.for_file(Path(fr.path))
        for finding in fr.findings:
            handling[id(finding)] = plan_finding(plan, fr, finding, ctx)
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
        _write_copies_manifest(root, outcomes)
    after = _scan(root, options.config) if changed else before
    after_by_path = {Path(fr.path).resolve(): fr for fr in after}
    for fr in ours:
        path = Path(fr.path)
        outcome = outcomes[path]
        again = after_by_path.get(path.resolve(), fr)
        outcome.verdicts_after = {b.value: again.verdicts.get(b, Verdict.UNKNOWN).value for b in options.backends}
        remaining = {(f.code, f.symbol) for f in again.findings}
        remaining_codes = {f.code for f in again.findings}
        for finding in fr.findings:
            how = handling.get(id(finding), Handling.NOT_NEEDED)
            reason = next((u.reason for u in outcome.plan.unfixable if u.code == finding.code), "")
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
            load_time = tuple(sorted(b.value for b in ctx.load_time.get(id(finding), ())))
            if how == Handling.UNFIXABLE and load_time:
                how = f"{Handling.COPIES if 'copies' in load_time else Handling.GUARD} ({', '.join(load_time)} only)"
            outcome.findings.append(FindingOutcome(finding.code, finding.symbol, finding.message, how, state, reason,
                                                   load_time))
        outcome.verdicts_after = _effective_verdicts(again, outcome, options)
        # New problems the patch introduced would be a bug in the patcher: report them, never hide them.
        for finding in again.findings:
            if (finding.code, finding.symbol) not in {(f.code, f.symbol) for f in fr.findings} and \
                    needs_attention(finding, options.backends):
                outcome.findings.append(FindingOutcome(finding.code, finding.symbol, finding.message,
                                                       "introduced by the patch", "remaining"))
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
                          findings=[FindingOutcome("error", None, fr.error or "unreadable", Handling.UNFIXABLE,
                                                   "unfixable", "the file cannot be read as ELF; it was copied unchanged")])
              for fr in unreadable]
    return list(outcomes.values()) + broken, changed


def _effective_verdicts(after: FileResult, outcome: FileOutcome, options: Options) -> dict[str, str]:
    """The re-scan's verdicts, except that findings handled at load time (copies, guard) no
    longer count against the backend they are handled for."""
    rank = {Verdict.OK: 0, Verdict.UNKNOWN: 1, Verdict.FAIL: 2}
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


def _write_copies_manifest(root: Path, outcomes: dict[Path, FileOutcome]) -> None:
    """Modules that need a private copy per interpreter, for interpkit.shims.copies.install_from_manifest."""
    modules = {}
    for path, outcome in outcomes.items():
        for edit in outcome.plan.edits:
            if edit.kind is EditKind.PER_INTERPRETER_COPY:
                modules[outcome.module or edit.target] = outcome.relative
    if modules:
        folder = root if root.is_dir() else root.parent
        text = json.dumps({"schema": "interpkit-copies/1", "modules": dict(sorted(modules.items()))}, indent=2) + "\n"
        (folder / COPIES_MANIFEST).write_text(text)


def _merge_manifest(new: Path, target: Path) -> None:
    """Single files patched into one folder share its manifest: add this input's modules."""
    from interpkit.analyzer.output import write_atomic

    data = json.loads(new.read_text())
    if target.is_file():
        try:
            old = json.loads(target.read_text())
            data["modules"] = {**old.get("modules", {}), **data["modules"]}
        except (ValueError, AttributeError):
            pass  # a manifest we cannot read is replaced by one we wrote
    data["modules"] = dict(sorted(data["modules"].items()))
    write_atomic(target, json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- re-verification

def _verify(outcomes: dict[Path, FileOutcome], results: list[FileResult], options: Options, when: str) -> None:
    """Probe each extension in the real runtimes; copies are probed with and without the hook."""
    from interpkit.analyzer.verify import verify_results

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
                from interpkit.shims.copies import probe_legacy

                result = probe_legacy(Path(fr.path), fr.module or outcome.module, options.interpreters,
                                      with_copies=False, timeout=options.timeout)
                outcome.verify.setdefault("copies", {})["before"] = result["status"]
    if when == "after":
        _verify_copies_after(outcomes, options)


def _verify_copies_after(outcomes: dict[Path, FileOutcome], options: Options) -> None:
    if Backend.COPIES not in options.backends or not options.verify:
        return
    from interpkit.shims.copies import probe_legacy

    for path, outcome in outcomes.items():
        if outcome.kind == FileKind.EXTENSION.value and any(e.kind is EditKind.PER_INTERPRETER_COPY for e in outcome.plan.edits):
            result = probe_legacy(Path(path), outcome.module, options.interpreters, with_copies=True, timeout=options.timeout)
            outcome.verify.setdefault("copies", {})["after"] = result["status"]


# --------------------------------------------------------------------------- one input

def _staging_dir(outdir: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=".interpkit-patch-", dir=outdir))


def _replace_into(staged: Path, target: Path) -> None:
    """Rename the staged result onto target; a folder replaces the old one in two renames."""
    if staged.is_dir():
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=".interpkit-old-", dir=target.parent))
            os.replace(target, trash / "old")
            os.replace(staged, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staged, target)
    else:
        os.replace(staged, target)


def patch_input(path: Path, outdir: Path | None, options: Options) -> PatchOutcome:
    """Patch one input (an ELF file, a folder, a wheel or a source tree) into outdir."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"cannot patch {path} (no such file or directory)")
    outcome = PatchOutcome(path, None, input_sha256=tree_sha256(path))
    writes = not (options.dry_run or options.check)
    if writes and outdir is None:
        raise InputError("cannot patch without an output folder (give -o OUTDIR, or --dry-run / --check)")
    work_parent = Path(outdir) if writes else Path(tempfile.gettempdir())
    work_parent.mkdir(parents=True, exist_ok=True)
    if writes and Path(outdir).resolve() in (path.resolve(), *path.resolve().parents):
        raise InputError(f"cannot patch {path} into {outdir} (the output folder must not contain the input's folder)")
    staging = _staging_dir(work_parent)
    try:
        from interpkit.shims import rebuild, wheel

        if path.suffix == ".whl":
            staged = wheel.repair_wheel(path, staging, options, outcome)
        elif rebuild.is_source(path):
            staged = rebuild.rebuild(path, staging, options, outcome)
        elif not writes:
            # Nothing is written in a dry run or check: plan straight from the input.
            staged = None
            outcome.files, outcome.changed = patch_tree(path, options)
        else:
            staged = staging / path.name
            if path.is_dir():
                shutil.copytree(path, staged, symlinks=True)
            else:
                shutil.copy2(path, staged)
            outcome.files, outcome.changed = patch_tree(staged, options)
        if tree_sha256(path) != outcome.input_sha256:
            raise PatchError(f"cannot patch {path} (the input changed while it was patched)")
        if writes and staged is not None:
            target = Path(outdir) / staged.name
            outcome.output_sha256 = tree_sha256(staged)
            _replace_into(staged, target)
            outcome.output = target
            manifest = staging / COPIES_MANIFEST
            if staged.suffix != ".whl" and not path.is_dir() and manifest.is_file():
                _merge_manifest(manifest, Path(outdir) / COPIES_MANIFEST)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return outcome
