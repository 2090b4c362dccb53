"""Verify a whole environment: predict every extension in a site-packages and probe it for real.

Used by ``interpkit verify --site-packages DIR --python 3.13``. Modules are probed many per
child process for speed (``native.subinterp.probe_modules`` re-runs a batch one module per
child when the batch child dies, so a crash is always pinned on the module that caused it).
A module whose probe fails with an error other than an ImportError is imported once more in
a plain interpreter: if it fails there too it is broken on its own (a missing dependency),
and the comparison leaves it out instead of blaming either side.
"""
from __future__ import annotations

from pathlib import Path

from analyzer.config import Config
from analyzer.errors import InputError
from analyzer.findings import Backend, FileKind, Verdict
from analyzer.modules import abi_matches
from analyzer.verify import Verification, confusion

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
    if row.status == "ok" and row.outcome.get("shared_state"):
        return "shared_state"
    return row.status


def verify_site_packages(site_dir: Path | str, python: str = "3.13", n: int = 2,
                         config: Config | None = None, *, configuration: str = "isolated",
                         timeout_s: float = 60.0, batch_size: int = 16) -> dict:
    """Predict (analyzer, subinterpreters verdict) and observe (probe in ``n`` subinterpreters
    of ``configuration``) every extension module under ``site_dir``.

    Returns {"rows": [...], "summary": confusion(...), "status_matrix": predicted × status,
    "agreement_all": agreed over every probed module, unknown predictions counted as misses,
    "disagreements": [...], ...}. Raises InputError for a bad directory and
    RuntimeUnavailable when the Python is absent.
    """
    from analyzer.elf.analyze import analyze_elf_files
    from native.subinterp import ModuleTarget, baseline_imports, probe_modules, resolve_python

    site_dir = Path(site_dir)
    if not site_dir.is_dir():
        raise InputError(f"cannot verify {site_dir} (not a directory)")
    site_dir = site_dir.resolve()
    info = resolve_python(python)
    config = config or Config(follow_imports=False)

    candidates = sorted(p for p in site_dir.rglob("*.so") if p.is_file() and not p.is_symlink())
    results = analyze_elf_files(candidates, config) if candidates else []
    backend = Backend.SUBINTERPRETERS

    rows: list[Verification] = []
    targets: list[tuple[Verification, ModuleTarget]] = []
    for fr in results:
        if fr.kind is not FileKind.EXTENSION:
            continue
        path = Path(fr.path)
        codes = tuple(sorted({f.code for f in fr.findings if backend in f.backends}))
        predicted = fr.verdicts.get(backend, Verdict.UNKNOWN)
        name = site_module_name(path, site_dir)
        if name is None:
            rows.append(Verification(path, fr.module or path.name, backend, predicted, "skipped",
                                     "file name is not an importable module name", codes))
            continue
        row = Verification(path, name, backend, predicted, "skipped", "", codes)
        rows.append(row)
        if not abi_matches(path, info.soabi):
            row.message = f"built for another interpreter (runtime is {info.soabi})"
            continue
        targets.append((row, ModuleTarget(name, path)))

    outcomes = probe_modules([t for _, t in targets], python=info, config=configuration, n=n,
                             sys_path=(str(site_dir),), timeout_s=timeout_s,
                             batch_size=batch_size)
    for row, target in targets:
        outcome = outcomes[target.name]
        row.status, row.message, row.outcome = outcome.status, outcome.message, outcome.to_json()

    errored = [(row, t) for row, t in targets if row.status == "error"]
    if errored:
        baseline = baseline_imports([t for _, t in errored], python=info,
                                    sys_path=(str(site_dir),), timeout_s=timeout_s,
                                    batch_size=batch_size)
        for row, target in errored:
            row.outcome["baseline"] = baseline[target.name].to_json()
            if not baseline[target.name].ok:
                row.message = f"broken outside subinterpreters too: {baseline[target.name].message}"

    probed = [row for row in rows if row.status != "skipped"]
    summary = confusion(probed)
    status_matrix = {p.value: {c: 0 for c in OBSERVED_COLUMNS} for p in Verdict}
    for row in rows:
        status_matrix[row.predicted.value][_status_column(row)] += 1
    observed_decided = [row for row in probed if row.observed is not Verdict.UNKNOWN]
    agreed_all = sum(1 for row in observed_decided if row.agrees)
    return {
        "site_packages": str(site_dir),
        "python": str(info.executable),
        "python_version": ".".join(map(str, info.version)),
        "backend": backend.value,
        "configuration": configuration,
        "interpreters": n,
        "modules": len(rows),
        "probed": len(probed),
        "rows": [row.to_json() for row in rows],
        "summary": summary,
        "agreement": summary["agreement"],
        "agreement_all": round(agreed_all / len(observed_decided), 4) if observed_decided else None,
        "status_matrix": status_matrix,
        "crashes_predicted_safe": summary["crashes_predicted_safe"],
        "disagreements": [row.to_json() for row in probed if row.agrees is not True],
    }
