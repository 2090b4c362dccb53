"""The memory report: per backend and interpreter count, measured Pss beside its prediction, and the cheapest option.

One ``MemoryReport`` is rendered three ways: a rich table, JSON (``interpkit-memory/1``,
documented in docs/memory-contract.md) and an optional PNG plot. Nothing here measures or
reads ELF files; it only combines.

The prediction of a backend's Pss for N interpreters uses only what is known before N
run: the one-interpreter sample of that backend (and the static ELF facts where it cannot
tell file pages from heap),

    predicted(N) = Pss(1) + (N - 1) x (heap(1) + files(1))

heap(1) being the anonymous memory the first interpreter (thread, process, forked child)
added and files(1) the Private_Dirty of its own copies of the files (namespaces, copies,
processes: relocated and written .data, touched .bss), which each further one writes again.
The static estimate counts every writable page, also those no code path writes (a CUDA
library's tables on a machine without a GPU: 542 MiB declared, 115 MiB written), so it is
used only where the sample has no files of its own (the forked children write into their
parent's copies, threads and subinterpreters share one). What all of them share (text, the
page cache, a forked parent's pages) is in Pss(1) once and does not grow. The static
estimate alone ("files only") stays a detail.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
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
    "required": ["schema", "workload", "page_size", "estimate", "rows", "predictions", "cheapest"],
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
                         "estimate_error", "estimate_error_total", "total_rss_bytes", "error",
                         "private_dirty_bytes", "shared_bytes", "predicted_pss_bytes", "prediction_error"],
            "properties": {
                "backend": {"enum": list(BACKENDS)},
                "interpreters": {"type": "integer", "minimum": 1},
                "total_pss_bytes": _NULLABLE_INT, "marginal_pss_bytes": _NULLABLE_INT,
                "marginal_private_dirty_bytes": _NULLABLE_INT, "files_private_bytes": _NULLABLE_INT,
                "heap_bytes": _NULLABLE_INT, "estimate_bytes": _NULLABLE_INT, "estimate_low_bytes": _NULLABLE_INT,
                "estimate_loaded_bytes": _NULLABLE_INT, "estimate_error": _NULLABLE_NUMBER,
                "estimate_error_total": _NULLABLE_NUMBER, "total_rss_bytes": _NULLABLE_INT,
                "error": {"type": ["string", "null"]}, "python": {"type": ["string", "null"]},
                "private_dirty_bytes": _NULLABLE_INT, "shared_bytes": _NULLABLE_INT,
                "predicted_pss_bytes": _NULLABLE_INT, "prediction_error": _NULLABLE_NUMBER,
            },
        }},
        "predictions": {"type": "object", "additionalProperties": {
            "type": "object",
            "required": ["backend", "base_pss_bytes", "heap_bytes", "files_bytes", "files_source",
                         "per_interpreter_bytes"],
            "properties": {"backend": {"enum": list(BACKENDS)}, "base_pss_bytes": {"type": "integer"},
                           "heap_bytes": {"type": "integer"}, "files_bytes": {"type": "integer"},
                           "files_source": {"enum": ["measured", "static"]},
                           "per_interpreter_bytes": {"type": "integer"}},
        }},
        "cheapest": {"oneOf": [{"type": "null"}, {
            "type": "object",
            "required": ["interpreters", "backend", "ranking", "line"],
            "properties": {"interpreters": {"type": "integer", "minimum": 1}, "backend": {"enum": list(BACKENDS)},
                           "ranking": {"type": "array", "minItems": 2, "items": {
                               "type": "object", "required": ["backend", "total_pss_bytes"],
                               "properties": {"backend": {"enum": list(BACKENDS)},
                                              "total_pss_bytes": {"type": "integer"}}}},
                           "line": {"type": "string"}},
        }]},
    },
}


class FilesSource(StrEnum):
    """Where a prediction's per-interpreter files term comes from."""

    MEASURED = "measured"    # the first interpreter's Private_Dirty of its own copies of the files
    STATIC = "static"        # the ELF estimate (a backend whose child cannot tell files from heap)


@dataclass(frozen=True)
class Prediction:
    """A backend's Pss for N interpreters, from its one-interpreter sample (and the ELF estimate
    where that sample cannot tell file pages from heap)."""

    backend: str
    base_pss: int            # Pss of the measured one-interpreter run, everything shared counted once
    heap: int                # what that interpreter added of anonymous memory (heap, arenas, stacks) and
                             # each further one repeats (subinterpreters: an empty one's start, not its server's)
    files: int               # the private file pages each further interpreter adds (see files_source)
    files_source: FilesSource = FilesSource.STATIC

    @property
    def per_interpreter(self) -> int:
        return self.heap + self.files

    def pss(self, interpreters: int) -> int:
        return self.base_pss + (interpreters - 1) * self.per_interpreter

    def as_dict(self) -> dict:
        return {"backend": self.backend, "base_pss_bytes": self.base_pss, "heap_bytes": self.heap,
                "files_bytes": self.files, "files_source": str(self.files_source),
                "per_interpreter_bytes": self.per_interpreter}


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
    total_private_dirty: int | None = None   # all of it: pages written by this process (these processes)
    total_shared: int | None = None          # Shared_Clean + Shared_Dirty: pages another mapping also holds
    predicted_pss: int | None = None         # Prediction.pss(N), None without a one-interpreter sample

    @property
    def prediction_error(self) -> float | None:
        """(predicted − measured) / measured total Pss."""
        if self.predicted_pss is None or not self.total_pss:
            return None
        return (self.predicted_pss - self.total_pss) / self.total_pss

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
            "private_dirty_bytes": self.total_private_dirty, "shared_bytes": self.total_shared,
            "predicted_pss_bytes": self.predicted_pss, "prediction_error": self.prediction_error,
        }


# Below this a relative error says nothing (a thread's few stack pages against a TLS estimate).
_SMALLEST_COMPARED = 256 * 1024


def _relative(estimate: int | None, measured: int | None) -> float | None:
    if estimate is None or measured is None or measured < _SMALLEST_COMPARED:
        return None
    return (estimate - measured) / measured


def _mean(values: list[int]) -> int | None:
    return sum(values) // len(values) if values else None


@dataclass(frozen=True)
class Cheapest:
    """Which option held the workload at N interpreters for the least total Pss, and the others."""

    interpreters: int
    ranking: tuple[tuple[str, int], ...]      # (backend, total Pss), least first

    @property
    def backend(self) -> str:
        return self.ranking[0][0]

    def line(self) -> str:
        best, pss = self.ranking[0]
        others = ", ".join(f"{name} {value / MIB:,.1f} MiB ({value / pss:.2f}x)" for name, value in self.ranking[1:])
        return (f"least memory for {self.interpreters}: {best}, {pss / MIB:,.1f} MiB Pss"
                + (f"; then {others}" if others else ""))

    def as_dict(self) -> dict:
        return {"interpreters": self.interpreters, "backend": self.backend,
                "ranking": [{"backend": name, "total_pss_bytes": value} for name, value in self.ranking],
                "line": self.line()}


@dataclass
class MemoryReport:
    workload: Workload
    estimate: StaticEstimate
    samples: list[Sample]
    rows: list[Row] = field(default_factory=list)
    predictions: dict[str, Prediction] = field(default_factory=dict)

    @property
    def cheapest(self) -> Cheapest | None:
        """At the largest N measured with at least two options, the one with the least Pss."""
        measured = [row for row in self.rows if row.total_pss is not None]
        for count in sorted({row.interpreters for row in measured}, reverse=True):
            at = sorted(((row.backend, row.total_pss) for row in measured if row.interpreters == count),
                        key=lambda item: item[1])
            if len(at) >= 2:
                return Cheapest(count, tuple(at))
        return None

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
                row.total_private_dirty = sample.total.private_dirty
                row.total_shared = sample.total.shared_clean + sample.total.shared_dirty
                if sample.interpreters == 1 and row.heap is not None:
                    # What a further interpreter repeats of the first one's heap, where the child
                    # could tell it apart from a one-off start (a subinterpreters server), else all of it.
                    repeated = _mean([p["repeated_heap_bytes"] for p in sample.per_interpreter
                                      if "repeated_heap_bytes" in p])
                    # The files each further interpreter writes of its own copies, as measured in the
                    # first; the static ceiling counts every writable page, also those no code writes
                    # (a GPU library's .bss on a machine without one: 542 MiB against 115 written).
                    files = _mean([p["repeated_files_bytes"] for p in sample.per_interpreter
                                   if "repeated_files_bytes" in p])
                    report.predictions[backend] = Prediction(
                        backend, sample.total.pss, row.heap if repeated is None else repeated,
                        static.private_per_interpreter if files is None else files,
                        FilesSource.STATIC if files is None else FilesSource.MEASURED)
                if sample.loaded:
                    row.estimate_loaded = estimate_loaded([Path(p) for p in sample.loaded]) \
                        .backend(backend).private_per_interpreter
                previous = (sample.interpreters, sample.total)
        for row in report.rows:
            prediction = report.predictions.get(row.backend)
            if prediction is not None and row.total_pss is not None:
                row.predicted_pss = prediction.pss(row.interpreters)
        return report

    # ------------------------------------------------------------------ JSON

    def as_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "page_size": PAGE_SIZE,
            "workload": self.workload.as_dict(),
            "estimate": self.estimate.as_dict(),
            "rows": [row.as_dict() for row in self.rows],
            "predictions": {name: prediction.as_dict() for name, prediction in self.predictions.items()},
            "cheapest": self.cheapest.as_dict() if self.cheapest else None,
            "samples": [sample.raw or {"backend": sample.backend, "interpreters": sample.interpreters,
                                       "error": sample.error} for sample in self.samples],
        }

    def to_json(self) -> dict:
        """The ``interpkit-memory/1`` document (a dict, like every result type's to_json)."""
        return self.as_dict()

    # ------------------------------------------------------------------ table

    def __rich_console__(self, console, options):
        from rich.table import Table

        table = Table(title="Memory, MiB. Pss total is the headline (a page shared by k mappings counts 1/k in "
                            "each; RSS, last column, counts it k times). predicted = Pss(1) + (N−1) × (heap of "
                            "interpreter 1 + the file pages it wrote of its own copies), known before N ran.",
                      title_justify="left")
        headings = (("backend", "left"), ("Python", "left"), ("N", "right"), ("Pss total", "right"), ("predicted", "right"),
                    ("error", "right"), ("Δ Pss/interp", "right"), ("Private_Dirty", "right"),
                    ("Shared", "right"), ("RSS", "right"))
        for heading, justify in headings:
            # headings may wrap at spaces to fit the console's width; numbers have none to wrap at
            table.add_column(heading, justify=justify, style="dim" if heading == "RSS" else None)
        for row in self.rows:
            if row.error:
                state = "skipped" if row.error.startswith("skipped") else "[red]failed[/red]"
                table.add_row(row.backend, row.python or "", str(row.interpreters), state, *[""] * 6)
                continue
            table.add_row(row.backend, row.python or "", str(row.interpreters), _mib(row.total_pss), _mib(row.predicted_pss),
                          _percent(row.prediction_error), _mib(row.marginal_pss), _mib(row.total_private_dirty),
                          _mib(row.total_shared), _mib(row.total_rss))
        yield table
        cheapest = self.cheapest
        if cheapest is not None:
            yield f"[bold]{cheapest.line()}[/bold]"
        for row in self.rows:
            if row.error:
                yield f"  {row.backend} × {row.interpreters}: {row.error}"
        for sample in self.samples:
            if getattr(sample, "teardown", None):
                # Measured, then tearing the backend down failed: the numbers stand, the run fails.
                yield (f"  [red]{sample.backend} × {sample.interpreters}: measured, then teardown failed: "
                       f"{sample.teardown.get('message') or sample.teardown.get('status')}[/red]")
        yield self._detail_table()
        yield self._estimate_table()
        if self.estimate.missing:
            yield f"[yellow]not found (counted as nothing): {', '.join(self.estimate.missing)}[/yellow]"

    def _detail_table(self):
        from rich.table import Table

        table = Table(title="Per interpreter, MiB: its heap and its files' private pages, measured, beside the "
                            "static ELF estimate (files only, no heap); marginal private = Δ Private_Dirty per "
                            "added interpreter.", title_justify="left")
        for heading in ("backend", "N", "marginal private", "heap", "files priv.", "files only: estimate",
                        "err files", "err total"):
            table.add_column(heading, justify="left" if heading == "backend" else "right")
        for row in self.rows:
            if row.error:
                continue
            table.add_row(row.backend, str(row.interpreters), _mib(row.marginal_private_dirty), _mib(row.heap),
                          _mib(row.files_private), _range(row), _percent(row.estimate_error),
                          _percent(row.estimate_error_total))
        return table

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
        """Total Pss against interpreter count for every option measured, each beside its
        prediction (dashed, the same colour); written atomically (a PNG, all or nothing)."""
        import io

        from interpkit.core.write import write_atomic

        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise InputError("cannot plot (matplotlib is not installed: pip install 'interpkit[plot]')") from None
        figure, axes = plt.subplots(figsize=(7, 4.5))
        backends = list(dict.fromkeys(row.backend for row in self.rows))
        counts = sorted({r.interpreters for r in self.rows if r.total_pss is not None}) or [1]
        for backend in backends:
            points = [(r.interpreters, r.total_pss / MIB) for r in self.rows
                      if r.backend == backend and r.total_pss is not None]
            if not points:
                continue
            label = {"processes": "processes (sum of Pss)",
                     "forked": "forked after preload (+ parent)",
                     "forked-frozen": "forked after preload, gc.freeze()"}.get(backend, backend)
            (line,) = axes.plot(*zip(*points), marker="o", label=label)
            prediction = self.predictions.get(backend)
            if prediction is not None:
                xs = [1, *[n for n in counts if n > 1]]
                axes.plot(xs, [prediction.pss(n) / MIB for n in xs], linestyle="--", color=line.get_color(),
                          alpha=0.7)
        if self.predictions:
            axes.plot([], [], linestyle="--", color="grey", label="predicted from N = 1 (heap + files written)")
        axes.set_xticks(counts)
        axes.set_xlabel("interpreters (threads, processes, forked children)")
        axes.set_ylabel("total Pss (MiB)")
        what = ", ".join(self.workload.modules) or "nothing imported"
        if self.workload.call:
            what += f"; {self.workload.call}()"
        axes.set_title(f"Memory vs N ({what})", fontsize="medium")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        figure.tight_layout()
        picture = io.BytesIO()
        try:
            figure.savefig(picture, format="png", dpi=100)
        finally:
            plt.close(figure)
        try:
            write_atomic(path, picture.getvalue())
        except OSError as exc:
            raise InputError(f"cannot write {path} ({exc.strerror or exc})") from None


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
