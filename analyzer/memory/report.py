"""The memory report: per backend and interpreter count, measured Pss and marginal cost beside the static estimate.

One ``MemoryReport`` is rendered three ways: a rich table, JSON (``interpkit-memory/1``) and
an optional PNG plot. Nothing here measures or reads ELF files; it only combines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.analyzer.memory.estimate import BACKENDS, PAGE_SIZE, StaticEstimate, estimate_loaded
from interpkit.analyzer.memory.measure import Sample, Workload
from interpkit.analyzer.memory.smaps import MemoryTotals

SCHEMA = "interpkit-memory/1"
MIB = 1024 * 1024

# The JSON contract, checked in tests with jsonschema; extra keys are allowed everywhere.
_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "workload", "page_size", "estimate", "rows"],
    "properties": {
        "schema": {"const": SCHEMA},
        "page_size": {"type": "integer"},
        "workload": {
            "type": "object",
            "required": ["modules", "sys_path", "call"],
            "properties": {"modules": {"type": "array", "items": {"type": "string"}},
                           "sys_path": {"type": "array", "items": {"type": "string"}},
                           "call": {"type": ["string", "null"]}},
        },
        "estimate": {
            "type": "object",
            "required": ["objects", "missing", "backends"],
            "properties": {
                "objects": {"type": "array", "items": {
                    "type": "object",
                    "required": ["path", "role", "data_bytes", "bss_bytes", "text_bytes", "tls_bytes"],
                    "properties": {"role": {"enum": ["libpython", "extension", "library", "loader"]}},
                }},
                "missing": {"type": "array", "items": {"type": "string"}},
                "backends": {"type": "object", "required": list(BACKENDS), "additionalProperties": {
                    "type": "object",
                    "required": ["private_per_interpreter_bytes", "private_low_per_interpreter_bytes", "shared_bytes"]}},
            },
        },
        "rows": {"type": "array", "items": {
            "type": "object",
            "required": ["backend", "interpreters", "total_pss_bytes", "marginal_pss_bytes",
                         "marginal_private_dirty_bytes", "files_private_bytes", "heap_bytes", "estimate_bytes", "estimate_low_bytes",
                         "estimate_error", "estimate_error_total", "total_rss_bytes", "error"],
            "properties": {
                "backend": {"enum": ["namespaces", "subinterpreters", "copies", "processes", "threads"]},
                "interpreters": {"type": "integer", "minimum": 1},
                "total_pss_bytes": _NULLABLE_INT, "marginal_pss_bytes": _NULLABLE_INT,
                "marginal_private_dirty_bytes": _NULLABLE_INT, "files_private_bytes": _NULLABLE_INT,
                "heap_bytes": _NULLABLE_INT, "estimate_bytes": _NULLABLE_INT, "estimate_low_bytes": _NULLABLE_INT,
                "estimate_loaded_bytes": _NULLABLE_INT, "estimate_error": _NULLABLE_NUMBER,
                "estimate_error_total": _NULLABLE_NUMBER, "total_rss_bytes": _NULLABLE_INT,
                "error": {"type": ["string", "null"]}, "python": {"type": ["string", "null"]},
            },
        }},
    },
}


@dataclass
class Row:
    """One backend at one interpreter count. Bytes; None where it does not apply or the run failed."""

    backend: str
    interpreters: int
    total_pss: int | None = None
    marginal_pss: int | None = None          # Δ total Pss per added interpreter, from the previous count
    marginal_private_dirty: int | None = None
    files_private: int | None = None         # per interpreter: Private_Dirty of the objects it loaded
    heap: int | None = None                  # per interpreter: anonymous memory no object owns, as a delta
    estimate: int | None = None              # static: private bytes per interpreter from the files reached
    estimate_low: int | None = None          # static floor: only the pages relocation writes
    estimate_loaded: int | None = None       # the same arithmetic on the files this run actually loaded
    total_rss: int | None = None             # secondary: over-counts shared file pages
    error: str | None = None
    python: str | None = None                # the CPython measured ("3.14.10")

    @property
    def estimate_error(self) -> float | None:
        """(estimate − measured file-backed private) / measured: what the ELF arithmetic claims to predict."""
        return _relative(self.estimate, self.files_private)

    @property
    def estimate_error_total(self) -> float | None:
        """(estimate − marginal private) / marginal private: how much of the next interpreter's cost
        the files explain (the rest is heap). Against Δ Private_Dirty, not Δ Pss: Pss also moves when
        other processes on the machine map the same files."""
        return _relative(self.estimate, self.marginal_private_dirty)

    def as_dict(self) -> dict:
        return {
            "backend": self.backend, "interpreters": self.interpreters,
            "total_pss_bytes": self.total_pss, "marginal_pss_bytes": self.marginal_pss,
            "marginal_private_dirty_bytes": self.marginal_private_dirty,
            "files_private_bytes": self.files_private, "heap_bytes": self.heap,
            "estimate_bytes": self.estimate, "estimate_low_bytes": self.estimate_low,
            "estimate_loaded_bytes": self.estimate_loaded,
            "estimate_error": self.estimate_error, "estimate_error_total": self.estimate_error_total,
            "total_rss_bytes": self.total_rss, "error": self.error, "python": self.python,
        }


# Below this a relative error says nothing (a thread's few stack pages against a TLS estimate).
_SMALLEST_COMPARED = 256 * 1024


def _relative(estimate: int | None, measured: int | None) -> float | None:
    if estimate is None or measured is None or measured < _SMALLEST_COMPARED:
        return None
    return (estimate - measured) / measured


def _mean(values: list[int]) -> int | None:
    return sum(values) // len(values) if values else None


@dataclass
class MemoryReport:
    workload: Workload
    estimate: StaticEstimate
    samples: list[Sample]
    rows: list[Row] = field(default_factory=list)

    @classmethod
    def build(cls, workload: Workload, estimate: StaticEstimate, samples: list[Sample]) -> "MemoryReport":
        report = cls(workload, estimate, samples)
        by_backend: dict[str, list[Sample]] = {}
        for sample in samples:
            by_backend.setdefault(sample.backend, []).append(sample)
        for backend, group in by_backend.items():
            previous: tuple[int, MemoryTotals] | None = None
            for sample in sorted(group, key=lambda s: s.interpreters):
                static = estimate.backend(backend)
                row = Row(backend, sample.interpreters, error=sample.error,
                          estimate=static.private_per_interpreter, estimate_low=static.private_low_per_interpreter,
                          python=sample.python_version)
                report.rows.append(row)
                if sample.error or sample.total is None:
                    continue
                if previous is None:
                    previous = (0, sample.baseline or MemoryTotals())
                added = sample.interpreters - previous[0]
                row.total_pss, row.total_rss = sample.total.pss, sample.total.rss
                row.marginal_pss = (sample.total.pss - previous[1].pss) // added
                row.marginal_private_dirty = (sample.total.private_dirty - previous[1].private_dirty) // added
                row.files_private = _mean([p["objects"]["private_dirty_bytes"] for p in sample.per_interpreter
                                           if "objects" in p])
                row.heap = _mean([p["heap_bytes"] for p in sample.per_interpreter if "heap_bytes" in p])
                if sample.loaded:
                    row.estimate_loaded = estimate_loaded([Path(p) for p in sample.loaded]) \
                        .backend(backend).private_per_interpreter
                previous = (sample.interpreters, sample.total)
        return report

    # ------------------------------------------------------------------ JSON

    def as_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "page_size": PAGE_SIZE,
            "workload": self.workload.as_dict(),
            "estimate": self.estimate.as_dict(),
            "rows": [row.as_dict() for row in self.rows],
            "samples": [sample.raw or {"backend": sample.backend, "interpreters": sample.interpreters,
                                       "error": sample.error} for sample in self.samples],
        }

    def to_json(self) -> dict:
        """The ``interpkit-memory/1`` document (a dict, like every result type's to_json)."""
        return self.as_dict()

    # ------------------------------------------------------------------ table

    def __rich_console__(self, console, options):
        from rich.table import Table

        table = Table(title="Memory per interpreter, MiB. Pss total is the headline (RSS, last column, counts a "
                            "shared file page once per mapping); marginal private = Δ Private_Dirty per added "
                            "interpreter = its files' private pages + its heap.", title_justify="left")
        headings = (("backend", "left"), ("Python", "left"), ("N", "right"), ("Pss total", "right"), ("marginal private", "right"),
                    ("Δ Pss/interp", "right"), ("files priv.", "right"), ("heap", "right"),
                    ("estimate low–high", "right"), ("err files", "right"), ("err total", "right"), ("RSS", "right"))
        for heading, justify in headings:
            # headings may wrap at spaces to fit the console's width; numbers have none to wrap at
            table.add_column(heading, justify=justify, style="dim" if heading == "RSS" else None)
        for row in self.rows:
            if row.error:
                state = "skipped" if row.error.startswith("skipped") else "[red]failed[/red]"
                table.add_row(row.backend, row.python or "", str(row.interpreters), state, "", "", "", "", _range(row),
                              "", "", "")
                continue
            table.add_row(row.backend, row.python or "", str(row.interpreters), _mib(row.total_pss), _mib(row.marginal_private_dirty),
                          _mib(row.marginal_pss), _mib(row.files_private), _mib(row.heap),
                          _range(row), _percent(row.estimate_error), _percent(row.estimate_error_total),
                          _mib(row.total_rss))
        yield table
        for row in self.rows:
            if row.error:
                yield f"  {row.backend} × {row.interpreters}: {row.error}"
        for sample in self.samples:
            if getattr(sample, "teardown", None):
                # Measured, then tearing the backend down failed: the numbers stand, the run fails.
                yield (f"  [red]{sample.backend} × {sample.interpreters}: measured, then teardown failed: "
                       f"{sample.teardown.get('message') or sample.teardown.get('status')}[/red]")
        yield self._estimate_table()
        if self.estimate.missing:
            yield f"[yellow]not found (counted as nothing): {', '.join(self.estimate.missing)}[/yellow]"

    def _estimate_table(self):
        from rich.table import Table

        table = Table(title=f"Static estimate from {len(self.estimate.objects)} ELF files (page size {PAGE_SIZE})",
                      title_justify="left")
        table.add_column("backend")
        table.add_column("private per interpreter (MiB)", justify="right")
        table.add_column("of which relocated (floor)", justify="right")
        table.add_column("shared once (MiB)", justify="right")
        for name in BACKENDS:
            backend = self.estimate.backend(name)
            table.add_row(name, _mib(backend.private_per_interpreter), _mib(backend.private_low_per_interpreter),
                          _mib(backend.shared))
        return table

    # ------------------------------------------------------------------ plot

    def plot(self, path: Path) -> None:
        """Total Pss against interpreter count per backend; the namespaces estimate dashed."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise InputError("cannot plot (matplotlib is not installed: pip install 'interpkit[plot]')") from None
        figure, axes = plt.subplots(figsize=(7, 4.5))
        backends = list(dict.fromkeys(row.backend for row in self.rows))
        for backend in backends:
            points = [(r.interpreters, r.total_pss / MIB) for r in self.rows
                      if r.backend == backend and r.total_pss is not None]
            if points:
                label = f"{backend} (sum of Pss)" if backend == "processes" else backend
                axes.plot(*zip(*points), marker="o", label=label)
        namespaces = [r for r in self.rows if r.backend == "namespaces" and r.total_pss is not None]
        if namespaces:
            first = namespaces[0]
            start = first.total_pss - first.interpreters * first.marginal_pss
            xs = [0] + [r.interpreters for r in namespaces]
            axes.plot(xs, [(start + x * (first.estimate or 0)) / MIB for x in xs], linestyle="--", color="grey",
                      label="namespaces: static estimate of private files (no heap)")
        counts = sorted({r.interpreters for r in self.rows})
        axes.set_xticks([0, *counts] if namespaces else counts)
        axes.set_xlabel("interpreters")
        axes.set_ylabel("total Pss (MiB)")
        modules = ", ".join(self.workload.modules) or "nothing imported"
        axes.set_title(f"Memory vs interpreters ({modules})")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        figure.tight_layout()
        try:
            figure.savefig(path, dpi=120)
        except OSError as exc:
            raise InputError(f"cannot write {path} ({exc.strerror or exc})") from None
        finally:
            plt.close(figure)


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / MIB:,.1f}"


def _range(row: Row) -> str:
    if row.estimate is None:
        return ""
    if row.estimate_low is None or row.estimate_low == row.estimate:
        return _mib(row.estimate)
    return f"{_mib(row.estimate_low)}–{_mib(row.estimate)}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:+.1f}%"
