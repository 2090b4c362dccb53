"""The scan driver: turn command-line paths into files, dispatch each kind to its analyzer.

ELF files go to interpkit.analyzer.elf, Python sources to interpkit.analyzer.source (which follows imports
down to the extensions they reach), wheels are unpacked safely into a temp dir first,
torch.package archives are read in place. One bad file costs one `error` entry.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from interpkit.analyzer.config import Config
from interpkit.core.errors import ArchiveError, InputError
from interpkit.core.findings import FileKind, FileResult, Report

ELF_MAGIC = b"\x7fELF"
PROGRESS_INTERVAL_S = 5.0   # off a terminal: one "scanning: done/total" line at most this often
_SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".tox", ".nox", ".mypy_cache", ".pytest_cache", "node_modules"}


def looks_like_shared_object(path: Path) -> bool:
    name = path.name
    return name.endswith(".so") or ".so." in name or name.endswith(".pyd")


def has_elf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == ELF_MAGIC
    except OSError:
        return False


@dataclass
class Collected:
    """Files found under the command-line paths, by the analyzer that will read them."""

    elf: list[Path] = field(default_factory=list)
    python: list[Path] = field(default_factory=list)
    wheels: list[Path] = field(default_factory=list)
    packages: list[Path] = field(default_factory=list)   # torch.package archives
    errors: list[FileResult] = field(default_factory=list)

    def total(self) -> int:
        return len(self.elf) + len(self.python) + len(self.wheels) + len(self.packages)


def _walk(root: Path) -> Iterator[Path]:
    """Files under root; links to directories are not followed, so loops cannot trap us."""
    for folder, dirs, files in os.walk(root, followlinks=False, onerror=None):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            yield Path(folder) / name


def _not_regular(path: Path) -> str | None:
    """Why path (links followed) is not a regular file that can be read to its end, or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return "dangling symbolic link"
        return exc.strerror or type(exc).__name__
    return None if stat.S_ISREG(mode) else "not a regular file"


def _classify(path: Path, into: Collected, *, explicit: bool, only: str | None) -> bool:
    """Put path with the analyzer that reads it; False when no analyzer would read it."""
    before = into.total() + len(into.errors)
    _sort_into(path, into, explicit=explicit, only=only)
    return into.total() + len(into.errors) > before


def _sort_into(path: Path, into: Collected, *, explicit: bool, only: str | None) -> None:
    suffix = path.suffix.lower()
    if suffix == ".py":
        if only != "elf":
            into.python.append(path)
    elif suffix == ".whl":
        into.wheels.append(path)
    elif suffix == ".pt" and only != "elf":
        into.packages.append(path)
    elif looks_like_shared_object(path) or (explicit and has_elf_magic(path)):
        if only != "source":
            into.elf.append(path)
    elif explicit:
        into.errors.append(FileResult(path, FileKind.ERROR,
                                      error=f"cannot scan {path} (not an ELF file, Python source, wheel or torch.package archive)"))


def collect(paths: list[Path], *, only: str | None = None) -> Collected:
    """Expand command-line paths; a missing path is a usage error (exit 2)."""
    found = Collected()
    for path in paths:
        path = Path(path)
        if not os.path.lexists(path):
            raise InputError(f"cannot scan {path} (no such file or directory)")
        if path.is_dir():
            for file in _walk(path):
                problem = _not_regular(file)
                if problem == "dangling symbolic link":
                    continue  # a link to nothing inside a tree: nothing to read
                if problem is not None:
                    # A FIFO or device would block or never end when read; a loop cannot be opened.
                    if _classify(file, Collected(), explicit=False, only=only):
                        found.errors.append(FileResult(file, FileKind.ERROR, error=f"cannot scan {file} ({problem})"))
                    continue
                _classify(file, found, explicit=False, only=only)
        elif path.is_file():
            _classify(path, found, explicit=True, only=only)
        else:
            problem = _not_regular(path) or "not a regular file or directory"
            found.errors.append(FileResult(path, FileKind.ERROR, error=f"cannot scan {path} ({problem})"))
    return found


def _dedupe(results: list[FileResult]) -> list[FileResult]:
    """The same file can be reached twice (named and imported); keep the richer entry."""
    from interpkit.analyzer.plumbing.cache import resolve

    by_path: dict[str, FileResult] = {}
    order: list[str] = []
    for fr in results:
        try:
            key = str(resolve(fr.path))
        except (OSError, RuntimeError):  # 3.11 raises RuntimeError on a symlink loop
            key = str(fr.path)
        if key not in by_path:
            by_path[key] = fr
            order.append(key)
        elif len(fr.findings) > len(by_path[key].findings) or fr.facts.get("chain"):
            by_path[key] = fr
    return [by_path[k] for k in order]


def _scan_wheel(wheel: Path, config: Config, *, only: str | None, advance: Callable[[], None]) -> list[FileResult]:
    """Unpack into a temp dir (checked first), scan the tree, report paths as `wheel!member`."""
    with tempfile.TemporaryDirectory(prefix="interpkit-wheel-") as tmp:
        try:
            from interpkit.analyzer.plumbing.archive import safe_extract

            safe_extract(wheel, Path(tmp))
        except ArchiveError as exc:
            return [FileResult(wheel, FileKind.ERROR, error=str(exc))]
        inner = collect([Path(tmp)], only=only)
        inner.python = []  # a wheel's Python code is scanned when a model imports it
        results, _ = _scan_collected(inner, config, advance=advance)
    # The temp dir is gone once we return: nothing reported may still point into it.
    inside = f"{tmp}{os.sep}"

    def member(path) -> Path:
        return Path(f"{wheel}!{Path(path).relative_to(tmp)}") if str(path).startswith(inside) else Path(path)

    for fr in results:
        fr.path = member(fr.path)
        if fr.error:
            fr.error = fr.error.replace(inside, f"{wheel}!")
        fr.findings = [replace(f, path=member(f.path)) for f in fr.findings]
    return [FileResult(wheel, FileKind.ARCHIVE, facts={"members_scanned": len(results)}), *results]


def _scan_collected(found: Collected, config: Config, *, advance: Callable[[], None],
                    model: ModelInput | None = None) -> tuple[list[FileResult], dict]:
    """Run each analyzer on its files; returns the results and report extras (plans, graphs)."""
    from interpkit.analyzer.elf.analyze import analyze_elf_files
    from interpkit.analyzer.source import api as source_api

    results: list[FileResult] = list(found.errors)
    extras: dict = {}
    if found.python:
        # the source pass calls back as files finish (in worker processes), not all at the end
        if config.follow_imports:
            files, model_extras = source_api.scan_model(found.python, config, elf_analyzer=analyze_elf_files,
                                                        progress=advance,
                                                        traced=model.traced if model else None,
                                                        model=model.entry_point if model else None)
            results.extend(files)
            extras.update(model_extras)
        else:
            results.extend(source_api.analyze_source_files(found.python, config, progress=advance))
    if found.elf:
        results.extend(analyze_elf_files(found.elf, config, progress=lambda *_: advance(),
                                         closure=config.follow_closure))
    for archive in found.packages:
        files, package_extras = source_api.scan_package_archive(archive, config)
        results.extend(files)
        extras.setdefault("packages", {})[str(archive)] = package_extras
        advance()
    return results, extras


@dataclass(frozen=True)
class ModelInput:
    """What a scan knows of the model beyond its files: the modules a trace saw loaded (name ->
    file, fed to the packaging plan) and the entry point whose answer the export check pickles."""
    traced: dict = field(default_factory=dict)
    entry_point: object = None    # packaging.ModelObject


def scan_paths(paths, config: Config | None = None, *, progress: bool | None = False, only: str | None = None,
               cache: bool = False, model: ModelInput | None = None, probe: bool = False) -> Report:
    """Scan the paths. cache=True (the CLI) also keeps whole reports in the scan cache: a scan of
    an unchanged tree with the same configuration and code is then one read. probe=True settles
    unreadable subinterpreters declarations by calling the entry point in a throwaway child of
    the matching CPython (analyzer/declaration_probe.py), before the report is built."""
    from interpkit.analyzer.plumbing.cache import one_scan

    config = config or Config()
    with one_scan():   # real paths of folders are looked up once per scan (cache.realpath)
        found = collect([Path(p) for p in paths], only=only)
        config = _with_target(config, found, paths)
        key = _report_key(found, config, only, model, probe) if cache else None
        if key is not None:
            cached = _REPORTS.get(key)
            if cached is not None:
                return cached
        report = _scan_found(found, config, progress=progress, only=only, model=model, probe=probe)
    if key is not None:
        _REPORTS.put(key, report)
    return report


def _with_target(config: Config, found: Collected, paths) -> Config:
    """config with `target` set: the Python the tree is judged for (source.target_python)."""
    from interpkit.analyzer.source.target_python import target_for

    if config.target is not None:
        return config
    target = target_for(config.python, found.elf, [Path(p) for p in paths], config.interpreters)
    return replace(config, target=target) if target is not None else config


def _scan_found(found: Collected, config: Config, *, progress: bool | None, only: str | None,
                model: ModelInput | None = None, probe: bool = False) -> Report:
    with _progress(found.total(), enabled=progress) as advance:
        results, extras = _scan_collected(found, config, advance=advance, model=model)
        for wheel in found.wheels:
            results.extend(_scan_wheel(wheel, config, only=only, advance=advance))
            advance()
    files = _dedupe(results)
    if probe:
        from interpkit.analyzer.declaration_probe import apply_probe

        apply_probe(files)
    if config.target is not None:
        extras["target_python"] = config.target.to_json()
    for fr in files:
        fr.findings = [f for f in fr.findings if config.keep(f)]
        if not fr.verdicts:
            fr.compute_verdicts()
    # Built once, every contribution in hand (the plan's and the import graph's are in extras).
    return Report(files=files, extras=extras)


def _report_key(found: Collected, config: Config, only: str | None, model: ModelInput | None = None,
                probe: bool = False) -> str | None:
    """What a whole report depends on: every collected file as it is now (real path, size,
    mtime), the configuration, the analyzer's own code, and what import resolution and the
    closure search look at outside the tree (the interpreter, and each sys.path folder's mtime,
    which changes when a package is installed or removed). None: some file cannot be keyed."""
    import sys

    from interpkit.analyzer.plumbing.cache import code_fingerprint, file_key

    parts = [repr(config), repr(only), sys.executable, os.environ.get("LD_LIBRARY_PATH", ""),
             repr(sorted(model.traced.items())) if model else "", repr(model.entry_point) if model else "",
             "probe" if probe else ""]
    for path in [*found.python, *found.elf, *found.wheels, *found.packages]:
        key = file_key(path)
        if key is None:
            return None
        parts.append(key)
    parts += [e.error or "" for e in found.errors]
    here = os.getcwd()
    for entry in config.target.search_path if config.target is not None else sys.path:
        if entry in ("", here):
            continue   # `python -m` puts the working folder first; writing the report there must not miss
        try:
            parts.append(f"{entry}:{os.stat(entry).st_mtime_ns}")
        except OSError:
            parts.append(entry)
    # an editable install's code lives in its checkout, whose edits touch no sys.path folder
    from interpkit.analyzer.source.installed import editable_projects

    for folder in sorted(editable_projects(config.target.search_path if config.target is not None else None)):
        parts.append(f"{folder}:{_newest_source(folder)}")
    analyzer = Path(__file__).resolve().parent
    code = sorted(analyzer.rglob("*.py")) + sorted(analyzer.parent.joinpath("core").rglob("*.py"))
    return code_fingerprint(code, *parts)


def _newest_source(folder: Path, *, limit: int = 50_000) -> str:
    """Count and newest mtime of the .py and .so files under folder (a checkout: at most
    `limit` files looked at, build and VCS folders skipped)."""
    newest = count = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "__pycache__")]
        for name in files:
            if name.endswith((".py", ".so")):
                count += 1
                try:
                    newest = max(newest, os.stat(os.path.join(root, name)).st_mtime_ns)
                except OSError:
                    pass
        if count > limit:
            break
    return f"{count}:{newest}"


class _ReportStore:
    """Whole reports in the scan cache (`reports-v1.sqlite`): a warm scan of an unchanged tree
    reads one entry instead of thousands. Pickled, so loaded only from a cache that is ours alone."""

    def get(self, key: str) -> Report | None:
        import pickle

        from interpkit.analyzer.plumbing.cache import Store

        store = Store("reports-v1")
        blob = store.get(key) if store.enabled and store.trusted else None
        store.close()
        if blob is None:
            return None
        try:
            report = pickle.loads(blob)
        except Exception:  # noqa: BLE001 - a damaged entry only costs a fresh scan
            return None
        return report if isinstance(report, Report) else None

    def put(self, key: str, report: Report) -> None:
        import pickle

        from interpkit.analyzer.plumbing.cache import Store

        store = Store("reports-v1")
        if store.enabled:
            try:
                store.put_many([(key, pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL))])
                store.keep_newest(REPORTS_KEPT)
            except (pickle.PicklingError, TypeError, AttributeError):
                pass  # something unpicklable in the extras: only the next scan's speed suffers
        store.close()


REPORTS_KEPT = 8   # whole reports are megabytes each: the few trees scanned last
_REPORTS = _ReportStore()


@contextlib.contextmanager
def _progress(total: int, *, enabled: bool | None):
    """advance(n=1): n more files done. A bar on a terminal, a plain line every few seconds
    elsewhere (console.progress); enabled=None leaves that choice to the console."""
    if enabled is False or total < 2:
        yield lambda steps=1: None
        return
    from interpkit.analyzer.console import progress

    with progress("scanning", total, interval_s=PROGRESS_INTERVAL_S) as advance:
        yield lambda steps=1: advance(steps)
