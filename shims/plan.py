"""PatchPlan: the edits each file needs, taken from findings, checked for contradictions, printable.

Patching is planned first and applied once (auditwheel's ``ElfPatcher`` shape): every strategy
(relink, copies, rebuild) turns the findings it can fix into :class:`Edit` records, the plan
refuses two edits that want different things of the same target, and what no strategy can fix
becomes an :class:`Unfixable` with its reason. A plan with no edits changes nothing, which is
what ``--check`` tests and what makes a second patch byte-identical to the first.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from interpkit.core.errors import InterpkitError
from interpkit.core.findings import Finding


class EditKind(enum.StrEnum):
    UNIQUE_TO_WEAK = "unique-to-weak"        # st_info binding STB_GNU_UNIQUE -> STB_WEAK
    HIDE_SYMBOL = "hide-symbol"              # exported symbol -> STB_LOCAL + STV_HIDDEN
    SET_LIBPYTHON = "set-libpython"          # DT_NEEDED on libpython: replace or add
    SET_RUNPATH = "set-runpath"              # DT_RUNPATH (DT_RPATH removed)
    SET_SONAME = "set-soname"                # DT_SONAME (private copies must not share one)
    PER_INTERPRETER_COPY = "per-interpreter-copy"  # load a private renamed copy per interpreter


# Edits that rewrite the ELF file itself; the others change how the file is loaded.
BINARY_EDITS = frozenset({EditKind.UNIQUE_TO_WEAK, EditKind.HIDE_SYMBOL, EditKind.SET_LIBPYTHON,
                          EditKind.SET_RUNPATH, EditKind.SET_SONAME})


class PlanConflict(InterpkitError):
    """Two edits want different things of the same target; nothing is applied."""


@dataclass(frozen=True, order=True)
class Edit:
    kind: EditKind
    target: str          # the symbol, "DT_NEEDED libpython", "DT_RUNPATH", "DT_SONAME", the module
    value: str = ""      # the new value where one applies (soname, runpath)
    old: str = ""        # what it was, for the before -> after line
    code: str = ""       # the finding behind the edit ("" when derived, e.g. a runpath for a copy)

    def describe(self) -> str:
        if self.kind is EditKind.UNIQUE_TO_WEAK:
            return f"{self.target}: STB_GNU_UNIQUE -> STB_WEAK"
        if self.kind is EditKind.HIDE_SYMBOL:
            return f"{self.target}: exported -> local, hidden"
        if self.kind is EditKind.PER_INTERPRETER_COPY:
            return f"{self.target}: load a private renamed copy in each interpreter"
        return f"{self.target}: {self.old or '(none)'} -> {self.value or '(none)'}"


class AboutFinding:
    """A patch record about one scan finding: it holds the finding itself (``self.finding``)
    and reads code, symbol and message from it rather than keeping copies."""

    finding: Finding

    @property
    def code(self) -> str:
        return self.finding.code

    @property
    def symbol(self) -> str | None:
        return self.finding.symbol

    @property
    def message(self) -> str:
        return self.finding.message


@dataclass(frozen=True)
class Unfixable(AboutFinding):
    finding: Finding
    reason: str

    def to_json(self) -> dict:
        return {"code": self.code, "symbol": self.symbol, "reason": self.reason}


@dataclass
class FilePlan:
    path: Path
    edits: list[Edit] = field(default_factory=list)
    unfixable: list[Unfixable] = field(default_factory=list)

    def add(self, edit: Edit) -> None:
        """Add an edit; an equal edit is merged, a contradicting one raises PlanConflict.

        Hiding a symbol subsumes making it weak (both rewrite its binding; a hidden symbol
        is out of every lookup), so a unique symbol that also clashes is simply hidden."""
        if edit.kind is EditKind.UNIQUE_TO_WEAK and any(
                e.kind is EditKind.HIDE_SYMBOL and e.target == edit.target for e in self.edits):
            return
        if edit.kind is EditKind.HIDE_SYMBOL:
            self.edits = [e for e in self.edits if not (e.kind is EditKind.UNIQUE_TO_WEAK and e.target == edit.target)]
        for present in self.edits:
            if present == edit or (present.kind, present.target, present.value) == (edit.kind, edit.target, edit.value):
                return
            reason = _contradiction(present, edit)
            if reason:
                raise PlanConflict(f"cannot plan {self.path.name} ({reason})")
        self.edits.append(edit)

    @property
    def binary_edits(self) -> list[Edit]:
        return [e for e in self.edits if e.kind in BINARY_EDITS]

    def to_json(self) -> dict:
        return {"path": str(self.path),
                "edits": [{"kind": e.kind.value, "target": e.target, "value": e.value, "old": e.old,
                           "code": e.code, "change": e.describe()} for e in sorted(self.edits)],
                "unfixable": [u.to_json() for u in self.unfixable]}


def _contradiction(a: Edit, b: Edit) -> str | None:
    """Why a and b cannot both be applied, or None."""
    if a.kind is b.kind and a.target == b.target and a.value != b.value:
        return f"{a.target} set to both {a.value!r} and {b.value!r}"
    for edit in (a, b):
        if edit.kind is EditKind.HIDE_SYMBOL and edit.target.startswith("PyInit_"):
            return f"{edit.target} is the module's entry point and must stay exported"
    return None


@dataclass
class PatchPlan:
    files: dict[Path, FilePlan] = field(default_factory=dict)

    def for_file(self, path: Path) -> FilePlan:
        path = Path(path)
        if path not in self.files:
            self.files[path] = FilePlan(path)
        return self.files[path]

    def add(self, path: Path, edit: Edit) -> None:
        self.for_file(path).add(edit)

    def unfixable(self, path: Path, finding: Finding, reason: str) -> None:
        plan = self.for_file(path)
        # One line per (code, symbol, reason): two findings that say the same thing are one item.
        if not any((u.code, u.symbol, u.reason) == (finding.code, finding.symbol, reason) for u in plan.unfixable):
            plan.unfixable.append(Unfixable(finding, reason))

    @property
    def is_empty(self) -> bool:
        return not any(fp.edits for fp in self.files.values())

    def render(self) -> str:
        """The dry-run text: one block per file, one line per edit or unfixable finding."""
        lines: list[str] = []
        for path, fp in sorted(self.files.items()):
            lines.append(f"{path}:")
            if not fp.edits and not fp.unfixable:
                lines.append("  nothing to change")
            for edit in sorted(fp.edits):
                lines.append(f"  {edit.kind.value:<22} {edit.describe()}" + (f"  [{edit.code}]" if edit.code else ""))
            for item in fp.unfixable:
                where = f" {item.symbol}" if item.symbol else ""
                lines.append(f"  {'unfixable':<22} {item.code}{where}: {item.reason}")
        return "\n".join(lines) + "\n"

    def to_json(self) -> list[dict]:
        return [fp.to_json() for _, fp in sorted(self.files.items())]
