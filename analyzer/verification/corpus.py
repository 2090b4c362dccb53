"""Verify a whole environment: predict every extension in a site-packages and probe it for real.

Used by ``interpkit verify --site-packages DIR --python 3.13``. Each module is probed in a
fresh child by default: modules probed earlier in the same process change what later ones
see (measured: numpy 2.1.3's ``_multiarray_umath`` aborts the process when it is the first
numpy binary loaded, but raises ImportError after ``_multiarray_tests`` was refused), and a
child costs only ~0.2 s. ``batch_size`` > 1 trades that fidelity for speed; a batch whose
child dies is re-run one module per child, so a crash is still pinned on its module.
A module whose probe fails with an error other than an ImportError is imported once more in
a plain interpreter: if it fails there too it is broken on its own (a missing dependency),
and the comparison leaves it out instead of blaming either side.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interpkit.analyzer.config import Config
from interpkit.core.errors import InputError
from interpkit.core.findings import Backend, FileKind, Verdict
from interpkit.analyzer.plumbing.modules import abi_matches
from interpkit.analyzer.verification.verify import Verification, confusion

# Columns of the status matrix: what the probe saw, finer than ok/fail.
OBSERVED_COLUMNS = ("ok", "import_error", "shared_state", "crash", "hang", "error", "skipped")


def site_module_name(path: Path, site_dir: Path) -> str | None:
    """Dotted module name of an extension from its path relative to the site directory,
    or None when some part cannot be imported (``numpy.libs/``, ``libfoo-1.2.so``)."""
    relative = path.relative_to(site_dir)
    stem = path.name.split(".", 1)[0]
    parts = [*relative.parts[:-1], stem]
    return ".".join(parts) if all(part.isidentifier() for part in parts) else None


def _status_column(row: Verification) -> str:
    if row.status == "ok" and row.shared_state:
        return "shared_state"
    return row.status


@dataclass
class _Row:
    """A row while its observations come in (probe, other inits, baseline, blame); frozen into
    a Verification once, at the end."""

    path: Path
    module: str
    predicted: Verdict
    codes: tuple[str, ...]
    status: str = "skipped"
    message: str = ""
    outcome: Any = None                 # ProbeOutcome
    details: dict = field(default_factory=dict)

    def freeze(self, backend: Backend, python_version: str) -> Verification:
        """The typed row; ``python_version`` is the CPython the observation is for (none when skipped)."""
        return Verification(self.path, self.module, backend, self.predicted, self.status, self.message,
                            self.codes, self.outcome, self.details,
                            python_version if self.status != "skipped" else "")


def verify_site_packages(site_dir: Path | str, python: str = "3.13", n: int = 2,
                         config: Config | None = None, *, configuration: str = "isolated",
                         timeout_s: float = 60.0, batch_size: int = 1) -> dict:
    """Predict (analyzer, subinterpreters verdict) and observe (probe in ``n`` subinterpreters
    of ``configuration``) every extension module under ``site_dir``.

    Returns {"rows": [...], "summary": confusion(...), "status_matrix": predicted × status,
    "agreement_all": agreed over every probed module, unknown predictions counted as misses,
    "disagreements": [...], ...}. Raises InputError for a bad directory and
    RuntimeUnavailable when the Python is absent.
    """
    rows, figures = verify_environment(site_dir, python, n, config, configuration=configuration,
                                       timeout_s=timeout_s, batch_size=batch_size)
    before = {key: value for key, value in figures.items() if key not in _AFTER_ROWS}
    after = {key: value for key, value in figures.items() if key in _AFTER_ROWS}
    return {**before, "rows": [row.to_json() for row in rows], **after}


# The figures that follow "rows" in verify_site_packages' dict (its key order is the JSON's).
_AFTER_ROWS = ("summary", "agreement", "agreement_all", "status_matrix", "crashes_predicted_safe",
               "teardown_failures", "disagreements")


def verify_environment(site_dir: Path | str, python: str = "3.13", n: int = 2,
                       config: Config | None = None, *, configuration: str = "isolated",
                       timeout_s: float = 60.0, batch_size: int = 1) -> tuple[list[Verification], dict]:
    """``verify_site_packages`` as typed rows and the run's figures (every key but "rows")."""
    from interpkit.analyzer.elf.analyze import analyze_elf_files
    from interpkit.native.subinterpreters.runtime import ModuleTarget, baseline_imports, probe_modules, resolve_python

    site_dir = Path(site_dir)
    if not site_dir.is_dir():
        raise InputError(f"cannot verify {site_dir} (not a directory)")
    site_dir = site_dir.resolve()
    config = config or Config(follow_imports=False)
    info = resolve_python(python, config.interpreters)

    candidates = sorted(p for p in site_dir.rglob("*.so") if p.is_file() and not p.is_symlink())
    results = analyze_elf_files(candidates, config) if candidates else []
    backend = Backend.SUBINTERPRETERS

    rows: list[_Row] = []
    targets: list[tuple[_Row, ModuleTarget]] = []
    extra_inits: list[tuple[_Row, ModuleTarget]] = []
    for fr in results:
        if fr.kind is not FileKind.EXTENSION:
            continue
        path = Path(fr.path)
        codes = tuple(sorted({f.code for f in fr.findings if backend in f.backends}))
        predicted = fr.verdicts.get(backend, Verdict.UNKNOWN)
        name = site_module_name(path, site_dir)
        if name is None:
            rows.append(_Row(path, fr.module or path.name, predicted, codes,
                             message="file name is not an importable module name"))
            continue
        row = _Row(path, name, predicted, codes)
        rows.append(row)
        if not abi_matches(path, info.soabi):
            row.message = f"built for another interpreter (runtime is {info.soabi})"
            continue
        targets.append((row, ModuleTarget(name, path)))
        # The verdict covers every PyInit_* in the file; load the others under their names.
        package = name.rpartition(".")[0]
        for init in fr.facts.get("init", []) or []:
            other = init.get("module") if isinstance(init, dict) else None
            if other and other.isidentifier() and other != name.rpartition(".")[2]:
                extra_inits.append((row, ModuleTarget(f"{package}.{other}" if package else other, path)))

    outcomes = probe_modules([t for _, t in targets + extra_inits], python=info,
                             config=configuration, n=n, sys_path=(str(site_dir),),
                             timeout_s=timeout_s, batch_size=batch_size)
    for row, target in targets:
        outcome = outcomes[target.name]
        # Import and use decide the row; a teardown failure stays in row.teardown (verify.py).
        row.status, row.outcome = outcome.use_status, outcome
        row.message = outcome.message if outcome.use_status == outcome.status else ""
    for row, target in extra_inits:
        outcome = outcomes[target.name]
        row.details.setdefault("other_inits", {})[target.name] = outcome.to_json()
        if row.status == "ok" and (outcome.use_status != "ok" or outcome.shared_state):
            row.status = outcome.use_status
            row.message = f"{target.name} (another init in this binary): {outcome.message}"
            if outcome.shared_state:
                row.details["shared_state"] = list(outcome.shared_state)

    errored = [(row, t) for row, t in targets if row.status == "error"]
    if errored:
        baseline = baseline_imports([t for _, t in errored], python=info,
                                    sys_path=(str(site_dir),), timeout_s=timeout_s,
                                    batch_size=batch_size)
        for row, target in errored:
            row.details["baseline"] = baseline[target.name].to_json()
            if not baseline[target.name].ok:
                row.message = f"broken outside subinterpreters too: {baseline[target.name].message}"

    _blame_dependencies(targets, info, configuration, n, site_dir, timeout_s)

    rows = [row.freeze(backend, info.full_version) for row in rows]
    probed = [row for row in rows if row.status != "skipped"]
    # Compared: what the binary itself decides. Left out, with the reason in the row: modules
    # broken outside subinterpreters too, and crashes a compiled dependency causes on its own.
    compared = [row for row in probed if "blamed_on" not in row.details
                and not row.message.startswith("broken outside subinterpreters")]
    summary = confusion(compared)
    status_matrix = {p.value: {c: 0 for c in OBSERVED_COLUMNS} for p in Verdict}
    for row in rows:
        status_matrix[row.predicted.value][_status_column(row)] += 1
    observed_decided = [row for row in compared if row.observed is not Verdict.UNKNOWN]
    agreed_all = sum(1 for row in observed_decided if row.agrees)
    return rows, {
        "site_packages": str(site_dir),
        "python": str(info.executable),
        "python_version": ".".join(map(str, info.version)),
        "backend": backend.value,
        "configuration": configuration,
        "interpreters": n,
        "modules": len(rows),
        "probed": len(probed),
        "compared": len(compared),
        "left_out": [{"module": row.module, "status": row.status, "reason": row.message}
                     for row in probed if row not in compared],
        "summary": summary,
        "agreement": summary["agreement"],
        "agreement_all": round(agreed_all / len(observed_decided), 4) if observed_decided else None,
        "status_matrix": status_matrix,
        "crashes_predicted_safe": summary["crashes_predicted_safe"],
        "teardown_failures": summary["teardown_failures"],
        "disagreements": [row.to_json() for row in compared if row.agrees is not True],
    }


def _blame_dependencies(targets, info, configuration: str, n: int, site_dir: Path,
                        timeout_s: float) -> None:
    """A crash or hang after a clean import may come from a compiled module the import pulled
    in; when one crashes or hangs when probed alone, pin the row's failure on it."""
    from interpkit.native.subinterpreters.runtime import blame_dependencies

    outcomes = {row.module: row.outcome for row, _ in targets
                if row.outcome is not None and row.outcome.status in ("crash", "hang")}
    blamed = blame_dependencies(outcomes, python=info, config=configuration, n=n,
                                sys_path=(str(site_dir),), timeout_s=timeout_s)
    for row, _ in targets:
        if row.module in blamed:
            dependency, alone = blamed[row.module]
            verb = {"crash": "crashes", "hang": "hangs"}[alone.status]
            row.details["blamed_on"] = dependency
            row.message = (f"{row.message} " if row.message else "") + (
                f"(caused by {dependency}, which {verb} when probed alone: {alone.message})")
