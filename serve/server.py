"""Serve a torch.package model from N namespaced interpreters of one process, and measure it.

The serving protocol (what an archive must hold):

* resource ``interpkit/model.pkl`` (``MODEL_PACKAGE``/``MODEL_RESOURCE``): the model, saved with
  ``PackageExporter.save_pickle``. It is called as ``model(request) -> answer``; when it has a
  ``batch(requests) -> answers`` method, batches of more than one request go through that.
* resource ``interpkit/requests.pkl`` (``REQUESTS_RESOURCE``): a non-empty list of example
  requests; request ``k`` of a run is ``requests[k % len(requests)]``.

``export_model`` writes such an archive; fixtures/models/make_example_package.py uses it for the
example model. Answers cross interpreters as pickles of plain Python (tensors become lists
inside the interpreter, serve/worker.py), so the host process never imports torch.

``serve_package`` runs all of it in a sandboxed child (interpkit.native.sandbox; this process
never hosts a runtime): the child streams progress, then the result, then tears the
interpreters down as its own reported step, so a crash or hang at teardown keeps the report
(``ServeResult.teardown`` says what failed). In the child, the archive is loaded once per
interpreter (``PackageImporter(path).load_pickle``),
feeds the requests from a thread pool (one client thread per interpreter, docs/facts.md fact 4),
times each call, reads the process's Pss from smaps (RSS counts the namespaces' shared file
pages N times, docs/facts.md fact 6), then replays the same batches in interpreter 0 alone and
checks that every answer is equal.
"""
from __future__ import annotations

import dataclasses
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

from interpkit.serve.weights import Weights
from interpkit.core.errors import InputError

SCHEMA = "interpkit-run/1"
MODEL_PACKAGE = "interpkit"
MODEL_RESOURCE = "model.pkl"
REQUESTS_RESOURCE = "requests.pkl"
#: How the interpreters get the archive's tensor storages (serve/weights.py).
WEIGHTS = tuple(str(choice) for choice in Weights)
_WORKER = "interpkit.serve.worker"
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
        "model": {"type": "object", "required": ["model_type", "example_requests", "batch_method", "torch_threads"],
                  "properties": {"weights": {
                      "type": "object", "required": ["weights", "file_backed_bytes", "heap_bytes"],
                      "properties": {"weights": {"enum": list(WEIGHTS)}, "file_backed_bytes": _BYTES,
                                     "heap_bytes": _BYTES, "mapped_storages": _BYTES, "mapped_bytes": _BYTES,
                                     "copied_storages": _BYTES, "copied_bytes": _BYTES}}}},
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
    import shutil
    import tempfile

    from torch.package import PackageExporter

    out = Path(out)
    # Atomic: a failed export (a module the plan left out, an object that does not pickle) leaves
    # no partial archive for `run` to reject as corrupt, and never half-overwrites an old one.
    # The archive is written under its own name (torch.package names its top folder after the
    # file) in a folder beside it, then renamed into place.
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if str(out.parent) else "."))
    try:
        staged = folder / out.name
        with warnings.catch_warnings(), PackageExporter(str(staged)) as exporter:
            # torch.package itself still goes through TypedStorage; the warning is not the model's.
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
            for action, patterns in (("extern", extern), ("mock", mock), ("intern", intern)):
                patterns = list(patterns)
                if patterns:
                    getattr(exporter, action)(patterns)
            exporter.save_pickle(MODEL_PACKAGE, MODEL_RESOURCE, model)
            exporter.save_pickle(MODEL_PACKAGE, REQUESTS_RESOURCE, list(requests))
        os.replace(staged, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
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
    threads_per_interpreter: int | None = None  # each interpreter's intra-op pool size
    teardown: dict | None = None               # ProbeOutcome.teardown of the serving child

    @property
    def teardown_failed(self) -> bool:
        return self.teardown is not None and self.teardown.get("status") not in ("ok", "shared_state")

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
            "threads_per_interpreter": self.threads_per_interpreter,
            "teardown": self.teardown,
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
        weights = data["model"].get("weights")
        if weights:
            table.add_row("model tensors (interpreter 0)", f"{weights['weights']}: {_mib(weights['file_backed_bytes'])} "
                          f"in the archive's mapping, {_mib(weights['heap_bytes'])} in the heap")
        if check["performed"]:
            verdict = ("equal" if check["equal"]
                       else f"{check['mismatches']} differ (first: request {check['first_mismatch']})")
            table.add_row("answers vs 1 interpreter", f"{verdict} ({check['compared']} compared)")
        else:
            table.add_row("answers vs 1 interpreter", "not checked (--no-check)")
        if self.threads_per_interpreter is not None:
            table.add_row("threads per interpreter",
                          f"{self.threads_per_interpreter} (torch: {data['model'].get('torch_threads', '?')})")
        table.add_row("teardown", _teardown_text(self.teardown))
        yield table


def _teardown_text(teardown: dict | None) -> str:
    if not teardown:
        return "not observed"
    if teardown.get("status") in ("ok", "shared_state"):
        retired = teardown.get("retired")
        return f"ok (retired, not finalised: interpreter {', '.join(map(str, retired))})" if retired else "ok"
    signal = f" ({teardown['signal']})" if teardown.get("signal") else ""
    return f"FAILED: {teardown['status']}{signal}: {(teardown.get('message') or '').splitlines()[0][:160]}"


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


def _serve_here(runtime, path: Path, *, requests: int, batch: int, check: bool, torch_threads: int,
                package: str, resource: str, requests_resource: str, keep_answers: bool,
                report: Progress, baseline, weights: str = "mapped") -> ServeResult:
    """Serve from ``runtime``'s interpreters in this process (the sandboxed child's side)."""
    from interpkit.native import RemoteError

    interpreters = runtime.n
    batches = _batches(requests, batch)
    report("load", 0, interpreters)
    started = time.perf_counter()
    try:
        loaded = runtime.call_all(f"{_WORKER}:load", str(path.resolve()), package, resource,
                                  requests_resource, torch_threads, weights)
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
                       memory, outcome, answers if keep_answers else [],
                       threads_per_interpreter=getattr(runtime, "threads_per_interpreter", torch_threads))


# ---------------------------------------------------------------------------- the sandboxed child

#: How long closing the interpreters may take before an interpreter counts as lost (a hang).
TEARDOWN_TIMEOUT_S = 60.0
_FAILURE_KINDS = {"input": InputError}


def _child_main() -> None:
    """``python -m interpkit.serve.server``: serve one job (sandbox protocol), stream the
    result before tearing the interpreters down, then report the teardown as its own step."""
    from interpkit.analyzer.memory.smaps import read_rollup
    from interpkit.native import Runtime, sandbox
    from interpkit.native.sandbox.outcome import teardown_facts

    channel = sandbox.Channel()
    job = sandbox.read_job()
    sandbox.no_core_dumps()
    steps: list[dict] = []
    baseline = read_rollup()
    try:
        if job.get("backend") == "copies":   # the same serving in the copies runtime
            from interpkit.native.copies.runtime import CopiesRuntime as Runtime  # noqa: N814
        runtime = Runtime(job["interpreters"], sys_path=[str(_REPO_ROOT), *sys.path], timeout=job["timeout"],
                          threads_per_interpreter=job["threads_per_interpreter"])
        try:
            result = _serve_here(runtime, Path(job["archive"]), requests=job["requests"], batch=job["batch"],
                                 check=job["check"], torch_threads=job["torch_threads"], package=job["package"],
                                 resource=job["resource"], requests_resource=job["requests_resource"],
                                 keep_answers=job["keep_answers"], baseline=baseline,
                                 weights=job.get("weights", WEIGHTS[0]),
                                 report=lambda phase, done, total: channel.emit(
                                     "progress", phase=phase, done=done, total=total))
            channel.emit("served", result={**dataclasses.asdict(result), "check": result.check.as_dict()})
        except Exception as exc:  # noqa: BLE001 - one line for the parent to raise
            channel.emit("failure", kind="input" if isinstance(exc, InputError) else "runtime",
                         message=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        # Teardown is its own step, after everything measured is out.
        steps.append({"step": "close"})
        channel.emit("step", seq=1, step="close")
        try:
            records = runtime.close(timeout=TEARDOWN_TIMEOUT_S)
            steps[-1].update(ok=True, **teardown_facts(records))
        except Exception as exc:  # noqa: BLE001 - a teardown failure is reported, never raised
            steps[-1].update(ok=False, error=f"{type(exc).__name__}: {exc}")
        channel.emit("step_done", seq=1, **steps[-1])
    except Exception as exc:  # noqa: BLE001 - the runtime did not start
        channel.emit("failure", kind="runtime", message=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    ok = all(step.get("ok") for step in steps)
    channel.emit("result", outcome={"status": "ok" if ok else "hang" if any("lost" in str(s.get("error", ""))
                                                                         for s in steps) else "error",
                                    "message": "" if ok else steps[-1].get("error", ""), "signal": None,
                                    "steps": steps, "shared_state": []})
    # Lost interpreters' threads may still run: end without waiting for them.
    os._exit(0)


def serve_package(archive: str | os.PathLike, *, interpreters: int, requests: int, batch: int = 1,
                  check: bool = True, torch_threads: int | None = None, timeout: float | None = 600.0,
                  package: str = MODEL_PACKAGE, resource: str = MODEL_RESOURCE,
                  requests_resource: str = REQUESTS_RESOURCE, keep_answers: bool = False,
                  threads_per_interpreter: int | None = None, backend: str = "namespaces",
                  weights: str = "mapped", progress: Progress | None = None) -> ServeResult:
    """Serve ``requests`` requests of the archive's model from ``interpreters`` interpreters; see the module doc.

    The interpreters run in a sandboxed child process (never in this one); its result is
    streamed before they are torn down, so a crash or hang at teardown keeps the report and
    sets ``ServeResult.teardown``. ``threads_per_interpreter`` sizes each interpreter's
    intra-op pools (None: cores ÷ N; 0: the libraries' defaults); ``torch_threads`` (default:
    the same) is what torch.set_num_threads gets in each. ``weights="mapped"`` (the default) maps
    the archive's tensor storages from the file, so the interpreters share one copy of the
    weights in the page cache (serve/weights.py); ``"copied"`` is torch.package's own
    reading, one heap copy per interpreter. Raises InputError for an archive
    that does not follow the protocol or a model that fails to load or answer (one line, the
    remote exception's type and message).
    """
    from interpkit.core.errors import InterpkitError
    from interpkit.native import sandbox
    from interpkit.native.sandbox.outcome import merge_steps, outcome_from_records
    from interpkit.native.namespaces.runtime import default_threads_per_interpreter

    path = Path(archive)
    if weights not in WEIGHTS:
        raise InputError(f"cannot serve with weights {weights!r} (expected one of {', '.join(WEIGHTS)})")
    if interpreters < 1 or requests < 1 or batch < 1:
        raise InputError("cannot serve (interpreters, requests and batch must be 1 or more)")
    problem = archive_problem(path, package, resource, requests_resource)
    if problem:
        raise InputError(f"cannot serve {path} ({problem})")
    threads = default_threads_per_interpreter(interpreters) if threads_per_interpreter is None \
        else threads_per_interpreter
    job = {"archive": str(path), "interpreters": interpreters, "requests": requests, "batch": batch,
           "check": check, "torch_threads": threads if torch_threads is None else torch_threads,
           "threads_per_interpreter": threads, "timeout": timeout, "package": package, "resource": resource,
           "requests_resource": requests_resource, "keep_answers": keep_answers, "backend": backend,
           "weights": weights}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    # A backstop for a child stuck where no request timeout reaches (C code, a hung teardown):
    # every streamed record restarts it.
    limits = sandbox.Limits(timeout_s=None if timeout is None else timeout + TEARDOWN_TIMEOUT_S + 60,
                            progress_events=("progress", "served", "step", "step_done"))
    with sandbox.Child([sys.executable, "-X", "faulthandler", "-m", "interpkit.serve.server"], job,
                       limits=limits, env=env) as child:
        for record in child:
            if record.get("event") == "progress" and progress is not None:
                progress(record["phase"], record["done"], record["total"])
        ending = child.wait()
        records = list(child.records)
    served = next((r["result"] for r in records if r.get("event") == "served"), None)
    failure = next((r for r in records if r.get("event") == "failure"), None)
    results = [r for r in records if r.get("event") == "result"]
    outcome = outcome_from_records(merge_steps(records), results[-1]["outcome"] if results else None,
                                   ending, what="serving")
    if served is None:
        if failure is not None:
            raise _FAILURE_KINDS.get(failure["kind"], InterpkitError)(failure["message"])
        raise InterpkitError(f"cannot serve {path} ({outcome.message})")
    served["check"] = Check(**{k: v for k, v in served["check"].items() if k != "equal"})
    result = ServeResult(**served)
    result.teardown = outcome.teardown
    return result


if __name__ == "__main__":
    _child_main()
