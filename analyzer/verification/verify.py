"""Prediction vs reality: load each extension in the real runtime and compare with the analyzer.

Every probe runs in a sandboxed child (interpkit.native.sandbox: timeout, resident-memory
limit, own process group), so a crashing extension is an observation, never a crash of
interpkit. Teardown (destroying one interpreter while others live, closing the rest, the
child's exit) is observed as its own step: a row's ``status`` says what import and use showed,
its ``teardown`` what tearing down showed, and a failed teardown fails the run (exit 1) with
the reason, beside everything observed before it.
"""
from __future__ import annotations

import platform
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from interpkit.core.findings import Backend, FileKind, FileResult, Verdict
from interpkit.analyzer.plumbing.modules import abi3_floor, abi_matches, extension_tag, module_location
from interpkit.native.sandbox.outcome import ObservedStatus, ProbeOutcome

OBSERVED_STATUSES = tuple(s.value for s in ObservedStatus if s is not ObservedStatus.SHARED_STATE)
SCHEMA = "interpkit-verify/1"


# the dynamic loader's words for a DT_NEEDED entry or dlopen path it could not find
MISSING_LIBRARY = "cannot open shared object file"
UNRESOLVED_DEPENDENCY = "IK306"   # the finding that predicts exactly that failure


@dataclass(frozen=True)
class Verification:
    """One module's prediction and observation: built once from the probe's typed outcome, then
    rendered (``to_json``, ``__rich_console__``) without being rebuilt or changed.

    ``status`` is one of OBSERVED_STATUSES: what import and use showed (a teardown failure stays
    in ``teardown``). ``details`` is what a whole-environment run adds beside the probe's
    outcome in the row's ``outcome`` JSON (other inits, a baseline import, the dependency a
    crash is blamed on, shared state another init saw).
    """

    path: Path
    module: str
    backend: Backend
    predicted: Verdict
    status: ObservedStatus
    message: str = ""
    codes: tuple[str, ...] = ()        # the findings behind the prediction
    outcome: ProbeOutcome | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    python: str = ""                  # the CPython version the observation is for ("3.14.10")

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ObservedStatus(self.status))

    @classmethod
    def observed_row(cls, path: Path, module: str, backend: Backend, predicted: Verdict,
                     codes: tuple[str, ...], outcome: ProbeOutcome, *, message: str | None = None,
                     details: Mapping[str, Any] | None = None) -> "Verification":
        """A probed row: ``status`` from import and use; a teardown failure stays in ``teardown``."""
        if message is None:
            message = "" if outcome.failed_at_teardown and outcome.use_status != outcome.status else outcome.message
        return cls(path, module, backend, predicted, outcome.use_status, message, codes, outcome, details or {})

    @cached_property
    def outcome_json(self) -> dict:
        """The probe's outcome as JSON, with ``details`` beside it ({} when nothing was probed)."""
        return {**self.outcome.to_json(), **self.details} if self.outcome is not None else dict(self.details)

    @property
    def shared_state(self) -> tuple[str, ...]:
        return tuple(self.outcome_json.get("shared_state") or ())

    @cached_property
    def teardown(self) -> dict | None:
        """What tearing the interpreters down showed (``ProbeOutcome.teardown``); None if not reached."""
        if self.outcome is None or self.status == ObservedStatus.SKIPPED:
            return None
        return self.outcome.teardown

    @property
    def teardown_failed(self) -> bool:
        return self.teardown is not None and self.teardown["status"] not in ("ok", "shared_state")

    @property
    def observed(self) -> Verdict:
        if self.status == ObservedStatus.OK and not self.shared_state:
            return Verdict.OK
        if self.unpredicted_failure:
            return Verdict.UNKNOWN
        if self.status in ("ok", "import_error", "crash", "hang"):
            return Verdict.FAIL
        return Verdict.UNKNOWN

    @property
    def unpredicted_failure(self) -> str | None:
        """Why a failure says nothing about the prediction: the dynamic loader could not find a
        library (the probe's environment, such as a relinked copy whose search path misses
        libtorch_python.so), while no finding predicted that (IK306, unresolved dependency).
        A predicted failure (a registry abort, a refused import) is another one, so the row is
        undecided rather than counted as agreement."""
        if self.status not in ("import_error", "crash") or UNRESOLVED_DEPENDENCY in self.codes:
            return None
        text = self.message or (self.outcome.message if self.outcome is not None else "")
        if MISSING_LIBRARY not in text:
            return None
        return "a library was not found where the probe ran, which no finding predicts"

    @property
    def agrees(self) -> bool | None:
        """None when either side is undecided (unknown prediction, skipped or errored probe)."""
        if self.predicted is Verdict.UNKNOWN or self.observed is Verdict.UNKNOWN:
            return None
        return self.predicted is self.observed

    def to_json(self) -> dict:
        return {
            "path": str(self.path), "module": self.module, "backend": self.backend.value,
            "predicted": self.predicted.value, "observed": self.observed.value, "status": self.status.value,
            "message": self.message, "agrees": self.agrees, "codes": list(self.codes),
            "undecided_because": self.unpredicted_failure,
            "outcome": self.outcome_json, "teardown": self.teardown, "python": self.python or None,
        }

    def teardown_line(self) -> str | None:
        """"module: teardown crash (SIGABRT): ..." when tearing down failed, else None."""
        teardown = self.teardown or {}
        if teardown.get("status") in (None, "ok", "shared_state"):
            return None
        signal = f" ({teardown['signal']})" if teardown.get("signal") else ""
        message = (teardown.get("message") or "").splitlines()[0][:200] if teardown.get("message") else ""
        return f"{self.module}: teardown {teardown['status']}{signal}" + (f": {message}" if message else "")

    def __rich_console__(self, console, options):
        from rich.text import Text

        style = {"ok": "green", "fail": "red", "unknown": "yellow"}
        agree = {True: ("agrees", "green"), False: ("DISAGREES", "bold red"), None: ("undecided", "dim")}[self.agrees]
        yield Text.assemble(self.module, " predicted ", (self.predicted.value, style[self.predicted.value]),
                            ", observed ", (self.observed.value, style[self.observed.value]),
                            f" ({self.status.value}, ", agree, ")")


def confusion(rows: list[Verification]) -> dict:
    """Counts of predicted × observed verdicts, plus the agreement rate over decided rows."""
    matrix = {p.value: {o.value: 0 for o in Verdict} for p in Verdict}
    for row in rows:
        matrix[row.predicted.value][row.observed.value] += 1
    decided = [r for r in rows if r.agrees is not None]
    agreed = sum(1 for r in decided if r.agrees)
    unsafe = [r.module for r in rows if r.predicted is Verdict.OK and r.status == "crash"]
    return {
        "matrix": matrix,
        "decided": len(decided),
        "agreed": agreed,
        "agreement": round(agreed / len(decided), 4) if decided else None,
        "undecided": len(rows) - len(decided),
        "crashes_predicted_safe": unsafe,
        "teardown_failures": [r.module for r in rows if r.teardown_failed],
    }


def probe(backend: Backend, module: str, sys_path: Path, *, interpreters: int, timeout: float,
          python: str | None = None, config_name: str = "isolated", binary: Path | None = None,
          runtime=None, preimport: tuple[str, ...] = ()) -> ProbeOutcome:
    """Run one sandboxed probe; its typed outcome. ``runtime``: the namespaces runtime of
    another Python (native/namespaces/build.py), None for this one. ``preimport``: modules each
    interpreter imports first (namespaces and copies)."""
    if backend is Backend.NAMESPACES:
        from interpkit.native.sandbox.probe import probe_module

        outcome = probe_module(module, path=sys_path, interpreters=interpreters, timeout=timeout, runtime=runtime,
                               preimport=preimport)
    elif backend is Backend.SUBINTERPRETERS:
        from interpkit.native.subinterpreters.runtime import probe_module as probe_subinterpreters

        # Load the binary by file: the answer is about it, not its package's __init__.
        outcome = probe_subinterpreters(module, path=sys_path, file=binary, interpreters=interpreters,
                                        timeout=timeout, python=python, config=config_name)
    elif backend is Backend.COPIES:
        from interpkit.native.sandbox.probe import probe_module

        # The namespaces probe's steps, run in the copies runtime (native/copies/runtime.py).
        outcome = probe_module(module, path=sys_path, interpreters=interpreters, timeout=timeout, backend="copies",
                               preimport=preimport)
    else:
        from interpkit.core.errors import RuntimeUnavailable

        raise RuntimeUnavailable(f"cannot verify with the {backend.value} backend (not implemented)")
    return outcome


_STATUS_RANK = {"ok": 0, "error": 1, "import_error": 2, "hang": 3, "crash": 4}


def _other_inits(fr: FileResult, module: str) -> list[str]:
    """Names of the binary's other PyInit_* functions (not the one its file name selects)."""
    own = module.rpartition(".")[2]
    names = []
    for init in fr.facts.get("init") or []:
        name = init.get("module") if isinstance(init, dict) else None
        if name and name.isidentifier() and name != own:
            names.append(name)
    return names


def is_op_library(fr: FileResult) -> bool:
    """A library named on the command line (not reached through a closure) that registers
    operators with torch's dispatcher: loaded through torch.ops.load_library, not imported."""
    return (fr.kind is FileKind.LIBRARY and not fr.facts.get("needed_by")
            and bool((fr.facts.get("op_library") or {}).get("registrations")))


def verifiable(fr: FileResult) -> bool:
    return fr.kind is FileKind.EXTENSION or is_op_library(fr)


def _verify_op_library(fr: FileResult, backend: Backend, *, interpreters: int, timeout: float) -> Verification:
    """Load the op library as torch does (import torch, torch.ops.load_library, call one of its
    operators) in each interpreter; torch comes from the library's own environment."""
    from interpkit.analyzer.elf.closure import site_packages_of

    codes = tuple(sorted({f.code for f in fr.findings if backend in f.backends}))
    predicted = fr.verdicts.get(backend, Verdict.UNKNOWN)
    namespaces = ", ".join((fr.facts.get("op_library") or {}).get("namespaces", [])) or "?"
    label = f"{Path(fr.path).name} (op library: {namespaces})"
    if backend not in (Backend.NAMESPACES, Backend.COPIES):
        return Verification(Path(fr.path), label, backend, predicted, "skipped",
                            f"op libraries load through torch; the {backend.value} probe cannot load torch", codes)
    from interpkit.native.sandbox.probe import probe_module

    environment = site_packages_of(Path(fr.path))
    outcome = probe_module(str(Path(fr.path).resolve()), path=environment, interpreters=interpreters,
                           timeout=timeout, preimport=("torch",), op_library=True, backend=backend.value)
    row = Verification.observed_row(Path(fr.path), label, backend, predicted, codes, outcome)
    steps = outcome.steps
    if row.status in ("error", "crash") and steps and steps[-1].get("step") in ("preimport", "import") \
            and steps[-1].get("ok") is False:
        # The process died loading torch or the library (a static initialiser's abort, such as
        # "Key already registered" for a second libtorch_python, whose exit() can itself crash
        # in the destructors while other threads run): it does not load in this backend.
        row = replace(row, status="import_error", message=f"torch or the op library did not load: {row.message}")
    return row


def target_soabi(backend: Backend, python: str | None) -> str:
    if backend is Backend.SUBINTERPRETERS:
        from interpkit.native.pythons import find_python

        return find_python(python or "3.13").soabi
    return sysconfig.get_config_var("SOABI")


def subinterpreter_python(path: Path, python: str | None):
    """(the Python that verifies this extension in subinterpreters, None) or (None, why it is
    skipped). ``python`` named by the user is used for what it can load; otherwise each
    extension gets a Python of its ABI: cpython-3XY exactly, abi3 from its wheel's floor up
    (interpkit.native.pythons.python_for_abi), and the reason names the Python that is missing."""
    from interpkit.core.errors import RuntimeUnavailable
    from interpkit.native.pythons import find_python, python_for_abi

    tag = extension_tag(path)
    if python:
        info = find_python(python)
        if abi_matches(path, info.soabi):
            return info, None
        return None, f"built for another interpreter ({tag}; --python {python} is {info.soabi})"
    try:
        return python_for_abi(tag, floor=abi3_floor(path) if tag == "abi3" else None), None
    except RuntimeUnavailable as exc:
        return None, str(exc)


def namespaces_runtime(path: Path):
    """(the namespaces runtime of a Python this extension was built for, None) or (None, why it
    is skipped): a cp312 … cp315 module runs in namespaces of that Python, in a child of it."""
    from interpkit.core.errors import RuntimeUnavailable
    from interpkit.native.pythons import python_for_abi
    from interpkit.native.namespaces.build import namespaces_runtime_for

    try:
        return namespaces_runtime_for(python_for_abi(extension_tag(path), runtime="namespaces")), None
    except RuntimeUnavailable as exc:
        return None, str(exc)


def verify_results(files: list[FileResult], backend: Backend, *, interpreters: int, timeout: float,
                   python: str | None = None, config_name: str = "isolated", progress=None) -> list[Verification]:
    soabi = target_soabi(backend, python) if backend is not Backend.SUBINTERPRETERS else ""
    rows: list[Verification] = []
    for fr in files:
        if is_op_library(fr):
            rows.append(_verify_op_library(fr, backend, interpreters=interpreters, timeout=timeout))
            if progress:
                progress()
            continue
        if fr.kind is not FileKind.EXTENSION:
            continue
        location = module_location(Path(fr.path))
        codes = tuple(sorted({f.code for f in fr.findings if backend in f.backends}))
        predicted = fr.verdicts.get(backend, Verdict.UNKNOWN)
        if location is None:
            rows.append(Verification(Path(fr.path), fr.module or "?", backend, predicted, "skipped",
                                     "file name is not an importable module name", codes))
            continue
        module, sys_path = location
        runtime = other_namespaces = None
        if backend is Backend.SUBINTERPRETERS:
            runtime, reason = subinterpreter_python(Path(fr.path), python)
        elif abi_matches(Path(fr.path), soabi):
            reason = None
        elif backend is Backend.NAMESPACES:
            other_namespaces, reason = namespaces_runtime(Path(fr.path))
            runtime = other_namespaces.python if other_namespaces else None
        else:
            reason = f"built for another interpreter (runtime is {soabi})"
        if reason:
            rows.append(Verification(Path(fr.path), module, backend, predicted, "skipped", reason, codes))
            continue
        if runtime is not None:
            python_used, version = str(runtime.executable), runtime.full_version
        else:
            python_used, version = python, platform.python_version()   # namespaces and copies run this Python
        # An extension that also registers dispatcher operators (TORCH_LIBRARY in a pybind11
        # module) is imported after torch, so the probe sees what its import registers and
        # calls one of those operators, as it does for an op library without PyInit_. Only in
        # namespaces: torch itself cannot load in copies (a second libtorch_python aborts),
        # and that probe keeps finding it through the import's own failure (import_error).
        registers_ops = bool((fr.facts.get("op_library") or {}).get("registrations"))
        outcome = probe(backend, module, sys_path, interpreters=interpreters, timeout=timeout,
                        python=python_used, config_name=config_name, binary=Path(fr.path), runtime=other_namespaces,
                        preimport=("torch",) if registers_ops and backend is Backend.NAMESPACES else ())
        if backend is Backend.SUBINTERPRETERS:
            # The verdict covers every PyInit_* in the binary; a second one can only be
            # loaded by file under its own name, which the subinterpreters probe can do.
            package = module.rpartition(".")[0]
            for other in _other_inits(fr, module):
                dotted = f"{package}.{other}" if package else other
                extra = probe(backend, dotted, sys_path, interpreters=interpreters, timeout=timeout,
                              python=python_used, config_name=config_name, binary=Path(fr.path))
                if _STATUS_RANK[extra.status] > _STATUS_RANK[outcome.status]:
                    outcome = replace(extra, message=f"{dotted}: {extra.message}")
        row = Verification.observed_row(Path(fr.path), module, backend, predicted, codes, outcome)
        rows.append(replace(row, python=version))
        if progress:
            progress()
    return rows


@dataclass(frozen=True)
class VerifyReport:
    """One `interpkit verify` run, built once from the typed rows: the ``interpkit-verify/1``
    JSON (``to_json``), a rich table (``__rich_console__``/``renderables``), one line per module.

    ``paths`` are the rows' paths as the user named them (a file inside a wheel by the wheel);
    ``header`` the run's own fields before the results (backend and interpreters, or a whole
    environment's figures, its ``summary`` included).
    """

    rows: tuple[Verification, ...]
    paths: tuple[str, ...]
    errors: tuple[tuple[str, str], ...]
    header: Mapping[str, Any]

    @classmethod
    def from_rows(cls, rows: list[Verification], errors: list[tuple[str, str]], backend: Backend,
                  interpreters: int, *, display=str, header: Mapping[str, Any] | None = None) -> "VerifyReport":
        return cls(tuple(rows), tuple(display(row.path) for row in rows), tuple(errors),
                   dict(header) if header is not None else {"backend": backend.value, "interpreters": interpreters})

    @cached_property
    def summary(self) -> dict:
        return self.header.get("summary") or confusion(list(self.rows))

    @cached_property
    def _json(self) -> dict:
        results = [{**row.to_json(), "path": path} for row, path in zip(self.rows, self.paths)]
        data = {"schema": SCHEMA, **self.header, "results": results,
                "errors": [{"path": path, "error": error} for path, error in self.errors]}
        if "summary" not in self.header:
            data["summary"] = self.summary
        return data

    @property
    def failed(self) -> bool:
        """A disagreement, a crash predicted safe, a failed teardown, or an unreadable input."""
        s = self.summary
        return (s["agreed"] < s["decided"] or bool(s["crashes_predicted_safe"])
                or bool(s.get("teardown_failures")) or bool(self.errors))

    def to_json(self) -> dict:
        return self._json

    def concise_lines(self) -> list[str]:
        out = []
        for row, path in zip(self.rows, self.paths):
            agree = {True: "agrees", False: "DISAGREES", None: "undecided"}[row.agrees]
            detail = row.message.splitlines()[0][:200] if row.message else ""
            if row.unpredicted_failure:
                detail = f"{detail} (undecided: {row.unpredicted_failure})"
            on = f" on Python {row.python}" if row.python else ""
            out.append(f"{path}: {row.module} predicted {row.predicted.value}, observed {row.observed.value}{on} "
                       f"({row.status.value}, {agree})" + (f": {detail}" if detail else ""))
        out.extend(f"{path}: {line}" for row, path in zip(self.rows, self.paths) if (line := row.teardown_line()))
        out.extend(f"{path}: error: {error}" for path, error in self.errors)
        return out

    def summary_text(self) -> str:
        s = self.summary
        rate = s["agreement"]
        return (f"agreement: {s['agreed']}/{s['decided']} decided" + (f" ({rate:.0%})" if rate is not None else "")
                + f", {s['undecided']} undecided; crashes predicted safe: {len(s['crashes_predicted_safe'])}"
                + (f"; teardown failed: {len(s['teardown_failures'])}" if s.get("teardown_failures") else ""))

    def __rich_console__(self, console, options):
        yield from self.renderables(console)

    def renderables(self, console, *, quiet: bool = False):
        """The results table, then (unless quiet) unreadable inputs, the agreement line and the matrix."""
        from rich.table import Table
        from rich.text import Text

        style = {"ok": "green", "fail": "red", "unknown": "yellow"}
        fold = "fold" if console.is_terminal else "ignore"  # off a terminal the width is unbounded anyway
        table = Table(title=f"verify: {self.header['backend']}, {self.header['interpreters']} interpreters",
                      title_justify="left")
        for column in ("module", "python", "predicted", "observed", "status", "agree", "findings", "detail"):
            table.add_column(column, overflow=fold, no_wrap=column in ("module", "findings") and not console.is_terminal)
        for row in self.rows:
            agree = {True: Text("yes", "green"), False: Text("NO", "bold red"), None: Text("-", "dim")}[row.agrees]
            detail = row.message.splitlines()[0][:120] if row.message else ""
            if row.unpredicted_failure:
                detail = f"{detail} (undecided: {row.unpredicted_failure})"
            predicted, observed = row.predicted.value, row.observed.value
            table.add_row(row.module, row.python or "-", Text(predicted, style[predicted]), Text(observed, style[observed]),
                          row.status.value, agree, ",".join(row.codes), detail)
        yield table
        for row in self.rows:
            if line := row.teardown_line():
                yield Text.assemble(("teardown failed ", "bold red"), line)
        for path, error in self.errors:
            yield Text.assemble(("error ", "bold red"), path, f": {error}")
        if quiet:
            return
        yield Text(self.summary_text())
        yield Text("predicted (rows) × observed (columns)", style="italic")
        matrix = Table()
        matrix.add_column("")
        for o in ("ok", "fail", "unknown"):
            matrix.add_column(o, justify="right")
        for p in ("ok", "fail", "unknown"):
            matrix.add_row(p, *(str(self.summary["matrix"][p][o]) for o in ("ok", "fail", "unknown")))
        yield matrix
