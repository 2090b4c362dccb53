"""Prediction vs reality: load each extension in the real runtime and compare with the analyzer.

Every probe runs in a sandboxed child (interpkit.native.sandbox: timeout, resident-memory
limit, own process group), so a crashing extension is an observation, never a crash of
interpkit. Teardown (destroying one interpreter while others live, closing the rest, the
child's exit) is observed as its own step: a row's ``status`` says what import and use showed,
its ``teardown`` what tearing down showed, and a failed teardown fails the run (exit 1) with
the reason, beside everything observed before it.
"""
from __future__ import annotations

import sysconfig
from dataclasses import dataclass, field, replace
from pathlib import Path

from interpkit.core.findings import Backend, FileKind, FileResult, Verdict
from interpkit.analyzer.modules import abi_matches, module_location

OBSERVED_STATUSES = ("ok", "import_error", "crash", "hang", "error", "skipped")


# the dynamic loader's words for a DT_NEEDED entry or dlopen path it could not find
MISSING_LIBRARY = "cannot open shared object file"
UNRESOLVED_DEPENDENCY = "IK306"   # the finding that predicts exactly that failure


@dataclass
class Verification:
    path: Path
    module: str
    backend: Backend
    predicted: Verdict
    status: str                       # one of OBSERVED_STATUSES
    message: str = ""
    codes: tuple[str, ...] = ()        # the findings behind the prediction
    outcome: dict = field(default_factory=dict)

    @classmethod
    def observed_row(cls, path: Path, module: str, backend: Backend, predicted: Verdict,
                     codes: tuple[str, ...], outcome: dict) -> "Verification":
        """A probed row: ``status`` from import and use; a teardown failure stays in ``teardown``."""
        from interpkit.native.outcome import ProbeOutcome

        observed = ProbeOutcome.from_json(outcome)
        message = outcome.get("message", "")
        if observed.failed_at_teardown and observed.use_status != observed.status:
            message = ""
        return cls(path, module, backend, predicted, observed.use_status, message, codes, outcome)

    @property
    def teardown(self) -> dict | None:
        """What tearing the interpreters down showed (``ProbeOutcome.teardown``); None if not reached."""
        if not self.outcome or self.status == "skipped":
            return None
        from interpkit.native.outcome import ProbeOutcome

        return ProbeOutcome.from_json(self.outcome).teardown

    @property
    def teardown_failed(self) -> bool:
        return self.teardown is not None and self.teardown["status"] not in ("ok", "shared_state")

    @property
    def observed(self) -> Verdict:
        if self.status == "ok" and not self.outcome.get("shared_state"):
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
        text = self.message or str(self.outcome.get("message") or "")
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
            "predicted": self.predicted.value, "observed": self.observed.value, "status": self.status,
            "message": self.message, "agrees": self.agrees, "codes": list(self.codes),
            "undecided_because": self.unpredicted_failure,
            "outcome": self.outcome, "teardown": self.teardown,
        }


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


def teardown_line(row: dict) -> str | None:
    """"module: teardown crash (SIGABRT) during destroy in interpreter 0: ..." for a JSON row
    whose teardown failed, else None."""
    teardown = row.get("teardown") or {}
    if teardown.get("status") in (None, "ok", "shared_state"):
        return None
    signal = f" ({teardown['signal']})" if teardown.get("signal") else ""
    message = (teardown.get("message") or "").splitlines()[0][:200] if teardown.get("message") else ""
    return f"{row['module']}: teardown {teardown['status']}{signal}" + (f": {message}" if message else "")


def probe(backend: Backend, module: str, sys_path: Path, *, interpreters: int, timeout: float,
          python: str | None = None, config_name: str = "isolated", binary: Path | None = None,
          preimport: tuple[str, ...] = ()) -> dict:
    """Run one sandboxed probe; returns the ProbeOutcome JSON. preimport: modules each
    interpreter imports first (namespaces and copies)."""
    if backend is Backend.NAMESPACES:
        from interpkit.native.probe import probe_module

        outcome = probe_module(module, path=sys_path, interpreters=interpreters, timeout=timeout,
                               preimport=preimport)
    elif backend is Backend.SUBINTERPRETERS:
        from interpkit.native.subinterp import probe_module as probe_subinterpreters

        # Load the binary by file: the answer is about it, not its package's __init__.
        outcome = probe_subinterpreters(module, path=sys_path, file=binary, interpreters=interpreters,
                                        timeout=timeout, python=python, config=config_name)
    elif backend is Backend.COPIES:
        from interpkit.native.probe import probe_module

        # The namespaces probe's steps, run in the copies runtime (native/copies.py).
        outcome = probe_module(module, path=sys_path, interpreters=interpreters, timeout=timeout, backend="copies",
                               preimport=preimport)
    else:
        from interpkit.core.errors import RuntimeUnavailable

        raise RuntimeUnavailable(f"cannot verify with the {backend.value} backend (not implemented)")
    return outcome.to_json()


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
    from interpkit.native.probe import probe_module

    environment = site_packages_of(Path(fr.path))
    outcome = probe_module(str(Path(fr.path).resolve()), path=environment, interpreters=interpreters,
                           timeout=timeout, preimport=("torch",), op_library=True, backend=backend.value).to_json()
    row = Verification.observed_row(Path(fr.path), label, backend, predicted, codes, outcome)
    steps = outcome.get("steps") or []
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


def verify_results(files: list[FileResult], backend: Backend, *, interpreters: int, timeout: float,
                   python: str | None = None, config_name: str = "isolated", progress=None) -> list[Verification]:
    soabi = target_soabi(backend, python)
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
        if not abi_matches(Path(fr.path), soabi):
            rows.append(Verification(Path(fr.path), module, backend, predicted, "skipped",
                                     f"built for another interpreter (runtime is {soabi})", codes))
            continue
        # An extension that also registers dispatcher operators (TORCH_LIBRARY in a pybind11
        # module) is imported after torch, so the probe sees what its import registers and
        # calls one of those operators, as it does for an op library without PyInit_. Only in
        # namespaces: torch itself cannot load in copies (a second libtorch_python aborts),
        # and that probe keeps finding it through the import's own failure (import_error).
        registers_ops = bool((fr.facts.get("op_library") or {}).get("registrations"))
        outcome = probe(backend, module, sys_path, interpreters=interpreters, timeout=timeout,
                        python=python, config_name=config_name, binary=Path(fr.path),
                        preimport=("torch",) if registers_ops and backend is Backend.NAMESPACES else ())
        if backend is Backend.SUBINTERPRETERS:
            # The verdict covers every PyInit_* in the binary; a second one can only be
            # loaded by file under its own name, which the subinterpreters probe can do.
            package = module.rpartition(".")[0]
            for other in _other_inits(fr, module):
                dotted = f"{package}.{other}" if package else other
                extra = probe(backend, dotted, sys_path, interpreters=interpreters, timeout=timeout,
                              python=python, config_name=config_name, binary=Path(fr.path))
                if _STATUS_RANK[extra["status"]] > _STATUS_RANK[outcome["status"]]:
                    outcome = {**extra, "message": f"{dotted}: {extra.get('message', '')}"}
        rows.append(Verification.observed_row(Path(fr.path), module, backend, predicted, codes, outcome))
        if progress:
            progress()
    return rows


@dataclass(frozen=True)
class VerifyReport:
    """One `interpkit verify` run: the ``interpkit-verify/1`` JSON, a rich table, one line per module.

    ``data`` is the JSON document itself (paths already as the user named them), so the
    three renderings cannot drift apart.
    """

    data: dict

    @classmethod
    def from_rows(cls, rows: list[Verification], errors: list[tuple[str, str]], backend: Backend,
                  interpreters: int, *, display=str) -> "VerifyReport":
        results = []
        for row in rows:
            entry = row.to_json()
            entry["path"] = display(row.path)
            results.append(entry)
        return cls({"schema": "interpkit-verify/1", "backend": backend.value, "interpreters": interpreters,
                    "results": results, "errors": [{"path": path, "error": error} for path, error in errors],
                    "summary": confusion(rows)})

    @property
    def summary(self) -> dict:
        return self.data["summary"]

    @property
    def failed(self) -> bool:
        """A disagreement, a crash predicted safe, a failed teardown, or an unreadable input."""
        s = self.summary
        return (s["agreed"] < s["decided"] or bool(s["crashes_predicted_safe"])
                or bool(s.get("teardown_failures")) or bool(self.data.get("errors")))

    def to_json(self) -> dict:
        return self.data

    def concise_lines(self) -> list[str]:
        out = []
        for r in self.data["results"]:
            agree = {True: "agrees", False: "DISAGREES", None: "undecided"}[r["agrees"]]
            detail = (r.get("message") or "").splitlines()[0][:200] if r.get("message") else ""
            if r.get("undecided_because"):
                detail = f"{detail} (undecided: {r['undecided_because']})"
            out.append(f"{r['path']}: {r['module']} predicted {r['predicted']}, observed {r['observed']} "
                       f"({r['status']}, {agree})" + (f": {detail}" if detail else ""))
        out.extend(f"{r['path']}: {line}" for r in self.data["results"] if (line := teardown_line(r)))
        out.extend(f"{e['path']}: error: {e['error']}" for e in self.data["errors"])
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
        table = Table(title=f"verify: {self.data['backend']}, {self.data['interpreters']} interpreters",
                      title_justify="left")
        for column in ("module", "predicted", "observed", "status", "agree", "findings", "detail"):
            table.add_column(column, overflow=fold, no_wrap=column in ("module", "findings") and not console.is_terminal)
        for r in self.data["results"]:
            agree = {True: Text("yes", "green"), False: Text("NO", "bold red"), None: Text("-", "dim")}[r["agrees"]]
            detail = (r.get("message") or "").splitlines()[0][:120] if r.get("message") else ""
            if r.get("undecided_because"):
                detail = f"{detail} (undecided: {r['undecided_because']})"
            table.add_row(r["module"], Text(r["predicted"], style[r["predicted"]]),
                          Text(r["observed"], style[r["observed"]]), r["status"], agree, ",".join(r["codes"]), detail)
        yield table
        for r in self.data["results"]:
            if line := teardown_line(r):
                yield Text.assemble(("teardown failed ", "bold red"), line)
        for error in self.data["errors"]:
            yield Text.assemble(("error ", "bold red"), error["path"], f": {error['error']}")
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
