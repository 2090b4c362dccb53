"""The one result type that flows from rules into reports, verification and patch plans."""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# One datum of a finding: a name, or several (the clashing symbols, a RUNPATH's entries).
DataValue = str | tuple[str, ...]


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> "Severity":
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (use error, warning or info)") from None


class Backend(enum.StrEnum):
    NAMESPACES = "namespaces"        # one libpython per glibc link-map namespace (dlmopen)
    SUBINTERPRETERS = "subinterpreters"  # CPython 3.12+/3.13 own-GIL isolated subinterpreters
    COPIES = "copies"                # renamed libpython copies in the base namespace


ALL_BACKENDS = frozenset(Backend)


class Verdict(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "n/a"   # the backend cannot host the file at all (built for another CPython)


# How verdicts fold: fail beats unknown beats ok, and a backend that cannot host the file at all
# (n/a) beats every answer it would have given.
VERDICT_RANK = {Verdict.OK: 0, Verdict.UNKNOWN: 1, Verdict.FAIL: 2, Verdict.NOT_APPLICABLE: 3}


class FileKind(enum.StrEnum):
    EXTENSION = "extension"
    LIBRARY = "library"
    PYTHON = "python"
    ARCHIVE = "archive"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str
    path: Path
    line: int | None = None
    column: int | None = None      # 1-based, as editors and SARIF count
    symbol: str | None = None
    backends: frozenset[Backend] = frozenset()
    fix: str | None = None
    # Verdict per backend this finding forces ("fail") or leaves open ("unknown");
    # backends not named here are not affected by the finding.
    verdicts: tuple[tuple[Backend, Verdict], ...] = ()
    # Import chain from a model entry point to the file (pre-packaging scan only).
    chain: tuple[str, ...] = ()
    # What the rule knew, by name (generator, symbols, library, section, init, call ...), sorted
    # by key: shims and verify read these instead of parsing the message, which is for people.
    # A tuple of pairs keeps the finding frozen and hashable; see findings_data() to build one.
    data: tuple[tuple[str, DataValue], ...] = ()

    def datum(self, key: str) -> DataValue | None:
        """One structured datum the rule recorded, or None."""
        for name, value in self.data:
            if name == key:
                return value
        return None

    def to_json(self) -> dict:
        out: dict = {"code": self.code, "severity": self.severity.label, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        if self.column is not None:
            out["column"] = self.column
        if self.symbol is not None:
            out["symbol"] = self.symbol
        out["backends"] = sorted(b.value for b in self.backends)
        if self.fix:
            out["fix"] = self.fix
        if self.chain:
            out["chain"] = list(self.chain)
        if self.data:
            out["data"] = {name: list(value) if isinstance(value, tuple) else value for name, value in self.data}
        return out


def findings_data(data: Mapping[str, DataValue | list[str] | None] | None) -> tuple[tuple[str, DataValue], ...]:
    """A Finding's data field from a mapping: sorted pairs, lists frozen to tuples, None dropped."""
    if not data:
        return ()
    return tuple(sorted((str(k), tuple(v) if isinstance(v, (list, tuple)) else str(v))
                        for k, v in data.items() if v is not None))


@dataclass(slots=True)
class FileResult:
    """Everything a scan learnt about one file."""

    path: Path
    kind: FileKind
    module: str | None = None
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)
    verdicts: dict[Backend, Verdict] = field(default_factory=dict)
    # Free-form facts other tools may read (init kind, generator, TLS sizes, closure ...).
    facts: dict = field(default_factory=dict)

    def compute_verdicts(self) -> None:
        """Fold the findings' per-backend verdicts: n/a beats fail beats unknown beats ok."""
        if self.kind is FileKind.ERROR:
            self.verdicts = {b: Verdict.UNKNOWN for b in Backend}
            return
        rank = VERDICT_RANK
        verdicts = {b: self.verdicts.get(b, Verdict.OK) for b in Backend}
        for f in self.findings:
            for backend, verdict in f.verdicts:
                if rank[verdict] > rank[verdicts[backend]]:
                    verdicts[backend] = verdict
        self.verdicts = verdicts

    def to_json(self) -> dict:
        out: dict = {"path": str(self.path), "kind": self.kind.value}
        if self.module:
            out["module"] = self.module
        if self.kind is FileKind.ERROR:
            out["error"] = self.error or "unreadable"
        out["findings"] = [f.to_json() for f in self.findings]
        out["verdicts"] = {b.value: self.verdicts.get(b, Verdict.UNKNOWN).value for b in Backend}
        if self.facts:
            out["facts"] = self.facts
        return out


REPORT_SCHEMA = "interpkit-report/1"


@dataclass(slots=True, frozen=True)
class Report:
    """One scan's result, built once with every contribution (the trace's too: a new Report,
    tracing/trace.py `with_traces`); frozen so that nothing rebinds its files or extras later."""

    files: list[FileResult] = field(default_factory=list)
    # Extra top-level sections (packaging plan, verification, memory ...), rendered as-is in JSON.
    extras: dict = field(default_factory=dict)

    @property
    def findings(self) -> list[Finding]:
        return [f for fr in self.files for f in fr.findings]

    def max_severity(self) -> Severity | None:
        sev = [f.severity for f in self.findings]
        return max(sev) if sev else None

    def to_json(self) -> dict:
        """The ``interpkit-report/1`` document (docs/report-contract.md; analyzer/report/schema.json)."""
        from interpkit.core.version import VERSION

        out = {"schema": REPORT_SCHEMA, "tool": {"name": "interpkit", "version": VERSION},
               "files": [fr.to_json() for fr in self.files], "summary": self.summary()}
        out.update(self.extras)
        return out

    def summary(self) -> dict:
        by_sev = {s.label: 0 for s in Severity}
        by_code: dict[str, int] = {}
        for f in self.findings:
            by_sev[f.severity.label] += 1
            by_code[f.code] = by_code.get(f.code, 0) + 1
        kinds: dict[str, int] = {}
        for fr in self.files:
            kinds[fr.kind.value] = kinds.get(fr.kind.value, 0) + 1
        verdicts = {b.value: {v.value: 0 for v in Verdict} for b in Backend}
        for fr in self.files:
            if fr.kind in (FileKind.EXTENSION,):
                for b in Backend:
                    verdicts[b.value][fr.verdicts.get(b, Verdict.UNKNOWN).value] += 1
        return {
            "files": len(self.files),
            "kinds": kinds,
            "findings": sum(by_sev.values()),
            "by_severity": by_sev,
            "by_code": dict(sorted(by_code.items())),
            "errors": kinds.get("error", 0),
            "extension_verdicts": verdicts,
        }
