"""Serve a torch.package model from N namespaced interpreters of one process, and measure it.

The serving protocol (what an archive must hold):

* resource ``interpkit/model.pkl`` (``MODEL_PACKAGE``/``MODEL_RESOURCE``): the model, saved with
  ``PackageExporter.save_pickle``. It is called as ``model(request) -> answer``; when it has a
  ``batch(requests) -> answers`` method, batches of more than one request go through that.
* resource ``interpkit/requests.pkl`` (``REQUESTS_RESOURCE``): a non-empty list of example
  requests; request ``k`` of a run is ``requests[k % len(requests)]``.

``export_model`` writes such an archive; fixtures/models/make_example_package.py uses it for the
example model. Answers cross interpreters as pickles of plain Python (tensors become lists
inside the interpreter, analyzer/serve_worker.py), so the host process never imports torch.

``serve_package`` loads the archive once per interpreter (``PackageImporter(path).load_pickle``),
feeds the requests from a thread pool (one client thread per interpreter, docs/facts.md fact 4),
times each call, reads the process's Pss from smaps (RSS counts the namespaces' shared file
pages N times, docs/facts.md fact 6), then replays the same batches in interpreter 0 alone and
checks that every answer is equal.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interpkit.core.errors import InputError

SCHEMA = "interpkit-run/1"
MODEL_PACKAGE = "interpkit"
MODEL_RESOURCE = "model.pkl"
REQUESTS_RESOURCE = "requests.pkl"
_WORKER = "interpkit.analyzer.serve_worker"
_REPO_ROOT = Path(__file__).resolve().parent.parent

_NUMBER = {"type": "number"}
_BYTES = {"type": "integer", "minimum": 0}
#: The `interpkit run --format json` contract; extra keys are welcome, these must be there.
JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "archive", "model", "interpreters", "requests", "batch", "load_seconds",
                 "wall_seconds", "throughput_rps", "latency_ms", "memory", "per_interpreter", "check"],
    "properties": {
        "schema": {"const": SCHEMA},
        "archive": {"type": "string"},
        "model": {"type": "object", "required": ["model_type", "example_requests", "batch_method", "torch_threads"]},
        "interpreters": {"type": "integer", "minimum": 1},
        "requests": {"type": "integer", "minimum": 1},
        "batch": {"type": "integer", "minimum": 1},
        "load_seconds": _NUMBER,
        "wall_seconds": _NUMBER,
        "throughput_rps": _NUMBER,
        "latency_ms": {"type": "object", "required": ["p50", "p90", "p99", "mean", "max"],
                       "additionalProperties": _NUMBER},
        "memory": {"type": "object",
                   "required": ["pss_bytes", "rss_bytes", "baseline_pss_bytes", "pss_per_interpreter_bytes",
                                "objects_pss_by_interpreter_bytes"],
                   "properties": {"pss_bytes": _BYTES, "rss_bytes": _BYTES, "baseline_pss_bytes": _BYTES,
                                  "pss_per_interpreter_bytes": {"type": "integer"},
                                  "objects_pss_by_interpreter_bytes": {"type": "array", "items": _BYTES}}},
        "per_interpreter": {"type": "array", "items": {
            "type": "object", "required": ["index", "requests"],
            "properties": {"index": {"type": "integer"}, "requests": {"type": "integer"}}}},
        "check": {"type": "object", "required": ["performed", "equal", "compared", "mismatches", "first_mismatch"],
                  "properties": {"performed": {"type": "boolean"}, "equal": {"type": ["boolean", "null"]},
                                 "compared": {"type": "integer"}, "mismatches": {"type": "integer"},
                                 "first_mismatch": {"type": ["integer", "null"]}}},
    },
}

#: progress(phase, done, total): phase is "load", "serve" or "check".
Progress = Callable[[str, int, int], None]


def export_model(out: str | os.PathLike, model: Any, requests: list[Any], *,
                 intern: Iterable[str] = (), extern: Iterable[str] = (), mock: Iterable[str] = ()) -> Path:
    """Write ``model`` and its example ``requests`` to a torch.package archive that ``serve_package`` serves.

    ``intern`` names the model's own modules (glob patterns as in ``PackageExporter.intern``);
    torch and the standard library are extern'ed implicitly by torch.package.
    """
    from torch.package import PackageExporter

    out = Path(out)
    with warnings.catch_warnings(), PackageExporter(str(out)) as exporter:
        # torch.package itself still goes through TypedStorage; the warning is not the model's.
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        for action, patterns in (("extern", extern), ("mock", mock), ("intern", intern)):
            patterns = list(patterns)
            if patterns:
                getattr(exporter, action)(patterns)
        exporter.save_pickle(MODEL_PACKAGE, MODEL_RESOURCE, model)
        exporter.save_pickle(MODEL_PACKAGE, REQUESTS_RESOURCE, list(requests))
    return out


def archive_problem(path: Path, package: str = MODEL_PACKAGE, resource: str = MODEL_RESOURCE,
                    requests_resource: str = REQUESTS_RESOURCE) -> str | None:
    """Why ``path`` cannot be served (one line), or None; reads the zip directory only."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"not a torch.package archive: {exc}"
    # torch.package stores every member under one top-level folder named after the archive.
    members = {name.partition("/")[2] for name in names}
    if ".data/version" not in members:
        return "not a torch.package archive (no .data/version)"
    for wanted in (f"{package}/{resource}", f"{package}/{requests_resource}"):
        if wanted not in members:
            return f"no resource {wanted} (see `interpkit run --help` for the serving protocol)"
    return None


# ---------------------------------------------------------------------------- results


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Check:
    """Answers of the N-interpreter run against the same batches served by interpreter 0 alone."""

    performed: bool
    compared: int = 0
    mismatches: int = 0
    first_mismatch: int | None = None     # request index

    @property
    def equal(self) -> bool | None:
        return (self.mismatches == 0) if self.performed else None

    def as_dict(self) -> dict:
        return {"performed": self.performed, "equal": self.equal, "compared": self.compared,
                "mismatches": self.mismatches, "first_mismatch": self.first_mismatch}


@dataclass
class ServeResult:
    """One serving run: timings, memory, the answer check; ``as_dict()`` is the ``interpkit-run/1`` report."""

    archive: str
    interpreters: int
    requests: int
    batch: int
    model: dict
    load_seconds: float
    wall_seconds: float
    latencies_ms: list[float]                  # one per request: the call that served its batch
    per_interpreter_requests: list[int]
    memory: dict
    check: Check
    answers: list[Any] = field(default_factory=list, repr=False)

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def latency(self) -> dict[str, float]:
        values = self.latencies_ms
        return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
                "mean": sum(values) / len(values) if values else float("nan"),
                "max": max(values) if values else float("nan")}

    def as_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "archive": self.archive,
            "model": self.model,
            "interpreters": self.interpreters,
            "requests": self.requests,
            "batch": self.batch,
            "load_seconds": self.load_seconds,
            "wall_seconds": self.wall_seconds,
            "throughput_rps": self.throughput,
            "latency_ms": self.latency(),
            "memory": self.memory,
            "per_interpreter": [{"index": i, "requests": n} for i, n in enumerate(self.per_interpreter_requests)],
            "check": self.check.as_dict(),
        }

    def to_json(self) -> dict:
        """The ``interpkit-run/1`` report (the same document as ``as_dict``)."""
        return self.as_dict()

    def __rich_console__(self, console, options):
        from rich.table import Table

        data = self.as_dict()
        latency, memory, check = data["latency_ms"], data["memory"], data["check"]
        table = Table(title=f"interpkit run {Path(self.archive).name}", show_header=True, title_justify="left")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row("model", data["model"]["model_type"])
        table.add_row("interpreters", str(self.interpreters))
        table.add_row("requests (batch)", f"{self.requests} ({self.batch})")
        table.add_row("requests per interpreter", " / ".join(str(n) for n in self.per_interpreter_requests))
        table.add_row("model load (all interpreters)", f"{self.load_seconds:.2f} s")
        table.add_row("wall time", f"{self.wall_seconds:.3f} s")
        table.add_row("throughput", f"{data['throughput_rps']:,.1f} requests/s")
        for name in ("p50", "p90", "p99"):
            table.add_row(f"latency {name}", f"{latency[name]:.2f} ms")
        table.add_row("memory Pss (process)", _mib(memory["pss_bytes"]))
        table.add_row("memory Pss per interpreter", _mib(memory["pss_per_interpreter_bytes"]))
        table.add_row("memory Rss (over-counts shared pages)", _mib(memory["rss_bytes"]))
        if check["performed"]:
            verdict = ("equal" if check["equal"]
                       else f"{check['mismatches']} differ (first: request {check['first_mismatch']})")
            table.add_row("answers vs 1 interpreter", f"{verdict} ({check['compared']} compared)")
        else:
            table.add_row("answers vs 1 interpreter", "not checked (--no-check)")
        yield table


def _mib(value: int) -> str:
    return f"{value / (1 << 20):,.1f} MiB"


# ---------------------------------------------------------------------------- serving


def _batches(requests: int, batch: int) -> list[list[int]]:
    return [list(range(start, min(start + batch, requests))) for start in range(0, requests, batch)]


def _memory(runtime, baseline) -> dict:
    """Pss of the whole process now, and of the objects each interpreter's namespace loaded."""
    from interpkit.analyzer.memory.smaps import LoadedObject, attribute, read_rollup, read_smaps

    now = read_rollup()
    objects = [LoadedObject(i, o.path, o.base) for i in runtime.live_indices() for o in runtime.namespace_libs(i)]
    split = attribute(read_smaps(), objects)
    n = runtime.n
    return {
        "pss_bytes": now.pss,
        "rss_bytes": now.rss,
        "baseline_pss_bytes": baseline.pss,
        # What the process grew by, per interpreter: loaded files, heaps and thread stacks together.
        "pss_per_interpreter_bytes": (now.pss - baseline.pss) // n,
        "objects_pss_by_interpreter_bytes": [split.by_interpreter.get(i).pss if i in split.by_interpreter else 0
                                             for i in range(n)],
        "anonymous_pss_bytes": split.anonymous.pss,
    }


def _remote_line(exc: Exception) -> str:
    message = getattr(exc, "remote_message", None) or str(exc)
    type_name = getattr(exc, "type_name", None)
    first = message.splitlines()[0] if message else ""
    return f"{type_name}: {first}" if type_name else first


def serve_package(archive: str | os.PathLike, *, interpreters: int, requests: int, batch: int = 1,
                  check: bool = True, torch_threads: int = 1, timeout: float | None = 600.0,
                  package: str = MODEL_PACKAGE, resource: str = MODEL_RESOURCE,
                  requests_resource: str = REQUESTS_RESOURCE, keep_answers: bool = False,
                  progress: Progress | None = None) -> ServeResult:
    """Serve ``requests`` requests of the archive's model from ``interpreters`` interpreters; see the module doc.

    Raises InputError for an archive that does not follow the protocol or a model that fails
    to load or answer (one line, the remote exception's type and message).
    """
    from interpkit.analyzer.memory.smaps import read_rollup
    from interpkit.native import RemoteError, Runtime

    path = Path(archive)
    if interpreters < 1 or requests < 1 or batch < 1:
        raise InputError("cannot serve (interpreters, requests and batch must be 1 or more)")
    problem = archive_problem(path, package, resource, requests_resource)
    if problem:
        raise InputError(f"cannot serve {path} ({problem})")
    report = progress or (lambda phase, done, total: None)
    batches = _batches(requests, batch)
    baseline = read_rollup()
    sys_path = [str(_REPO_ROOT), *sys.path]
    with Runtime(interpreters, sys_path=sys_path, timeout=timeout) as runtime:
        report("load", 0, interpreters)
        started = time.perf_counter()
        try:
            loaded = runtime.call_all(f"{_WORKER}:load", str(path.resolve()), package, resource,
                                      requests_resource, torch_threads)
        except RemoteError as exc:
            raise InputError(f"cannot load {path} in interpreter {exc.interpreter} ({_remote_line(exc)})") from None
        load_seconds = time.perf_counter() - started
        report("load", interpreters, interpreters)

        answers: list[Any] = [None] * requests
        latencies: list[float] = [0.0] * requests
        served = [0] * interpreters
        next_batch = iter(range(len(batches)))
        lock = threading.Lock()
        done = [0]
        failure: list[BaseException] = []

        def client(index: int) -> None:
            # One client thread per interpreter: a thread only ever enters its own interpreter.
            while not failure:
                with lock:
                    position = next(next_batch, None)
                if position is None:
                    return
                indices = batches[position]
                began = time.perf_counter()
                try:
                    values = runtime.call(index, f"{_WORKER}:serve", indices)
                except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
                    failure.append(exc)
                    return
                elapsed_ms = (time.perf_counter() - began) * 1000.0
                for request, value in zip(indices, values):
                    answers[request] = value
                    latencies[request] = elapsed_ms
                with lock:
                    served[index] += len(indices)
                    done[0] += len(indices)
                    report("serve", done[0], requests)

        report("serve", 0, requests)
        started = time.perf_counter()
        clients = [threading.Thread(target=client, args=(i,), name=f"interpkit-client-{i}")
                   for i in range(interpreters)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        wall = time.perf_counter() - started
        if failure:
            exc = failure[0]
            if isinstance(exc, RemoteError):
                raise InputError(f"cannot serve {path} (interpreter {exc.interpreter} raised "
                                 f"{_remote_line(exc)})") from None
            raise exc
        memory = _memory(runtime, baseline)

        outcome = Check(performed=check)
        if check:
            report("check", 0, requests)
            for indices in batches:
                reference = runtime.call(0, f"{_WORKER}:serve", indices)
                for request, value in zip(indices, reference):
                    outcome.compared += 1
                    if value != answers[request]:
                        outcome.mismatches += 1
                        if outcome.first_mismatch is None:
                            outcome.first_mismatch = request
                report("check", outcome.compared, requests)

    model = dict(loaded[0])
    return ServeResult(str(path), interpreters, requests, batch, model, load_seconds, wall, latencies, served,
                       memory, outcome, answers if keep_answers else [])
