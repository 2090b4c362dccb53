"""Patch one input: copy it, patch the copy in a temp dir, then rename it into place.

The input is never written: it is hashed before and after, and a difference is an error. The
staging folder lives inside the output folder, so the final ``os.replace`` is a rename on one
file system (readers see the old output or the new one, never half of it). What kind of input
it is decides the route: a wheel goes through ``wheel``, a source tree through ``rebuild``
(which ends in ``wheel``), anything else straight to the tree patcher (``tree``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.shims import rebuild, wheel
from interpkit.shims.tree import COPIES_MANIFEST, FileOutcome, FindingOutcome, Options, PatchError, patch_tree

__all__ = ["COPIES_MANIFEST", "FileOutcome", "FindingOutcome", "Options", "PatchError", "PatchOutcome",
           "PatchReport", "patch_input", "patch_tree", "tree_sha256"]


# --------------------------------------------------------------------------- results

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
    rebuild_planned: bool = False   # --dry-run / --check on a source tree: a rebuild would run

    @property
    def unfixed(self) -> list[tuple[FileOutcome, FindingOutcome]]:
        return [(f, x) for f in self.files for x in f.unfixed]

    def to_json(self) -> dict:
        return {"input": str(self.input), "output": str(self.output) if self.output else None,
                "input_sha256": self.input_sha256, "output_sha256": self.output_sha256,
                "changed": self.changed, "files": [f.to_json() for f in self.files], "notes": self.notes,
                **({"rebuild": self.rebuild} if self.rebuild else {}),
                **({"rebuild_planned": True} if self.rebuild_planned else {})}


@dataclass(frozen=True)
class PatchReport:
    """One `interpkit patch` run over its inputs: the ``interpkit-patch/1`` JSON and a rich rendering."""

    outcomes: tuple[PatchOutcome, ...]
    backends: frozenset
    interpreters: int
    mode: str                                   # "patch", "check" or "dry-run"

    @property
    def unfixed(self) -> int:
        return sum(len(o.unfixed) for o in self.outcomes)

    @property
    def would_change(self) -> int:
        """Binary edits, plus one per source tree that would be rebuilt."""
        return (sum(len(f.plan.binary_edits) for o in self.outcomes for f in o.files)
                + sum(1 for o in self.outcomes if o.rebuild_planned))

    @property
    def failed(self) -> bool:
        """Something stays unfixed, or (--check) a patch would change something."""
        return bool(self.unfixed) or (self.mode == "check" and bool(self.would_change))

    def summary(self) -> dict:
        return {"inputs": len(self.outcomes), "files": sum(len(o.files) for o in self.outcomes),
                "edits": self.would_change, "unfixed": self.unfixed,
                "fixed": sum(1 for o in self.outcomes for f in o.files for x in f.findings if x.after == "fixed")
                + sum(change.get("findings_removed", 0) for o in self.outcomes for change in o.rebuild)}

    def to_json(self) -> dict:
        return {"schema": "interpkit-patch/1", "backends": sorted(b.value for b in self.backends),
                "interpreters": self.interpreters, "mode": self.mode,
                "results": [o.to_json() for o in self.outcomes], "summary": self.summary()}

    def __rich_console__(self, console, options):
        yield from self.renderables(console)

    def renderables(self, console, *, quiet: bool = False):
        """Per input and file: each finding's handling and result, applied edits, verdicts and
        re-verification; the plan when nothing is written; then (unless quiet) the summary line."""
        from rich.table import Table
        from rich.text import Text

        style = {"fixed": "green", "would be fixed": "green", "handled at load time": "cyan", "not needed": "dim",
                 "unfixable": "red", "remaining": "bold red"}
        for outcome in self.outcomes:
            yield Text(f"{outcome.input} -> {outcome.output}" if outcome.output
                       else f"{outcome.input} (nothing written)", style="bold")
            for note in outcome.notes:
                yield Text(f"  {note}")
            for file in outcome.files:
                if not file.findings and not file.plan.edits:
                    continue
                table = Table(title=file.relative, title_justify="left", show_edge=False)
                for column in ("code", "symbol", "handling", "after", "reason"):
                    # off a terminal the width is unbounded: a symbol is never broken
                    table.add_column(column, overflow="fold", no_wrap=column == "symbol" and not console.is_terminal)
                for item in file.findings:
                    table.add_row(item.code, item.symbol or "", item.handling,
                                  Text(item.after, style.get(item.after, "")), item.reason)
                yield table
                for line in file.applied:
                    yield Text(f"  applied: {line}")
                verdicts = ", ".join(f"{b} {file.verdicts_before.get(b)} -> {file.verdicts_after.get(b)}"
                                     for b in sorted(file.verdicts_before))
                yield Text(f"  verdicts: {verdicts}")
                for backend, entry in sorted(file.verify.items()):
                    yield Text(f"  verify {backend} (N={self.interpreters}): "
                               f"{entry.get('before', '-')} -> {entry.get('after', '-')}")
        if self.mode != "patch":
            from interpkit.shims.plan import PatchPlan

            plan = PatchPlan({Path(f.relative): f.plan for o in self.outcomes for f in o.files})
            yield Text("plan (nothing written):")
            yield Text(plan.render().rstrip("\n"))
        if not quiet:
            s = self.summary()
            yield Text(f"{_plural(s['inputs'], 'input')}, {_plural(s['files'], 'file')}: "
                       f"{_plural(s['fixed'], 'finding')} fixed, {s['unfixed']} unfixed, "
                       f"{_plural(s['edits'], 'edit')} planned")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun if count == 1 else noun + 's'}"


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


# --------------------------------------------------------------------------- one input

def _merge_manifest(new: Path, target: Path) -> None:
    """Single files patched into one folder share its manifest: add this input's modules."""
    from interpkit.core.write import write_atomic

    data = json.loads(new.read_text())
    if target.is_file():
        try:
            old = json.loads(target.read_text())
            data["modules"] = {**old.get("modules", {}), **data["modules"]}
        except (ValueError, AttributeError):
            pass  # a manifest we cannot read is replaced by one we wrote
    data["modules"] = dict(sorted(data["modules"].items()))
    write_atomic(target, json.dumps(data, indent=2) + "\n")


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
        if path.suffix == ".whl":
            staged = wheel.repair_wheel(path, staging, options, outcome)
        elif rebuild.is_source(path) and not writes:
            staged = None
            rebuild.plan_rebuild(path, outcome)
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
