"""Analyze ELF files: facts per file, every enabled ELF rule, the DT_NEEDED closure, cross-file rules."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.closure import SYSTEM_LIBRARIES, is_libpython, resolve_closure
from interpkit.analyzer.elf.facts import ClosureFacts, ElfFacts, facts_for
from interpkit.analyzer.elf.image import is_elf
from interpkit.analyzer.elf.modinit import InitKind, infer_from_delegate
from interpkit.core.findings import FileKind, FileResult
from interpkit.analyzer.plumbing.modules import enclosing_packages
from interpkit.analyzer.registry import RegisteredRule, rules_for

log = logging.getLogger(__name__)

__all__ = ["analyze_elf_files", "is_elf"]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def _read_error(path: Path) -> str | None:
    """A reason the file cannot be an ELF object, checked before pyelftools sees it."""
    if not path.exists():
        return f"cannot read {path} (no such file)"
    if path.is_dir():
        return f"cannot read {path} (is a directory)"
    if not path.is_file():  # a FIFO or device: opening it could block forever
        return f"cannot read {path} (not a regular file)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror or _one_line(exc)})"
    if not head.startswith(b"\x7fELF"):
        return f"cannot read {path} as ELF (not an ELF file)"
    if len(head) < 52:
        return f"cannot read {path} as ELF (truncated header)"
    return None


def _load(path: Path) -> ElfFacts | str:
    """Facts, or a one-line reason. Catches broadly: pyelftools raises many types on bad input."""
    reason = _read_error(path)
    if reason is not None:
        return reason
    try:
        return facts_for(path)
    except Exception as exc:  # noqa: BLE001 - the per-file boundary: one bad file costs one entry
        log.debug("cannot read %s", path, exc_info=True)
        return f"cannot read {path} as ELF ({_one_line(exc)})"


def dotted_module_name(path: Path, init_module: str | None) -> str:
    """`torch._C` for site-packages/torch/_C.cpython-311-x86_64-linux-gnu.so: the enclosing
    packages, then the name from PyInit_<name> where there is one."""
    leaf = init_module or path.name.split(".", 1)[0]
    packages, _ = enclosing_packages(path.parent)
    return ".".join(reversed([leaf, *packages]))


def elf_rules() -> list[RegisteredRule]:
    """The ELF rule modules only, sorted by code (the registry loads just this family, so the
    ELF scan does not pay for libcst)."""
    return list(rules_for("elf"))


def _run_rules(result: FileResult, facts: ElfFacts, rules, config: Config) -> None:
    for registered in rules:
        if not config.enabled(registered.rule.code):
            continue
        result.findings.extend(registered.check(facts))


def _result_for(path: Path, facts: ElfFacts, kind: FileKind) -> FileResult:
    module = dotted_module_name(path, facts.init.inits[0].module) if kind is FileKind.EXTENSION else None
    return FileResult(path, kind, module=module, facts=facts.summary())


def _closure_facts(facts: ElfFacts, dependencies) -> ClosureFacts:
    """The closure as this scan resolved it, and PyInit_ functions that only call into a
    dependency given the kind that dependency shows. Built fresh per scan: never stored on facts."""
    libraries = tuple((d.soname, str(d.path) if d.path else None) for d in dependencies)
    if not any(i.kind is InitKind.UNKNOWN and i.calls for i in facts.init.inits):
        return ClosureFacts(libraries)
    providers = []
    for dependency in dependencies:
        if dependency.path is None or dependency.soname in SYSTEM_LIBRARIES or is_libpython(dependency.soname):
            continue
        try:
            dep = facts_for(dependency.path)
        except Exception:  # noqa: BLE001 - reported on the dependency's own entry
            continue
        providers.append((dependency.soname, dep.exports, dep.imports))
    return ClosureFacts(libraries, tuple(infer_from_delegate(i, providers) for i in facts.init.inits))


def analyze_elf_files(paths: list[Path], config: Config, *, progress: Callable | None = None,
                      closure: bool = True) -> list[FileResult]:
    """One FileResult per input (kind extension, library or error), then one per closure dependency."""
    from interpkit.analyzer.plumbing.cache import one_scan

    # One scan: the real path of each folder is looked up once (cache.realpath), for the facts
    # cache's keys and the closure's dependencies alike (torch's 12 closures ask 144 times).
    with one_scan():
        return _analyze(paths, config, progress, closure)


def _analyze(paths: list[Path], config: Config, progress: Callable | None, closure: bool) -> list[FileResult]:
    from interpkit.analyzer.plumbing.cache import realpath

    rules = elf_rules()
    results: list[FileResult] = []
    scanned: list[tuple[FileResult, ElfFacts]] = []
    seen: set[str] = set()

    for path in paths:
        path = Path(path)
        loaded = _load(path)
        if isinstance(loaded, str):
            results.append(FileResult(path, FileKind.ERROR, error=loaded))
        else:
            seen.add(realpath(path))
            result = _result_for(path, loaded, FileKind.EXTENSION if loaded.is_extension else FileKind.LIBRARY)
            results.append(result)
            scanned.append((result, loaded))
        if progress is not None:
            progress(path)

    if closure:
        lookups: dict = {}   # locate_library answers, for this scan's closures only
        for position, (result, facts) in enumerate(list(scanned)):
            try:
                dependencies = resolve_closure(result.path, facts_for, lookups)
            except Exception as exc:  # noqa: BLE001 - closure trouble must not cost the file its findings
                log.debug("closure of %s failed: %s", result.path, exc)
                continue
            # This scan's view of the file: the cached facts stay as the file shows them alone.
            facts = facts.with_closure(_closure_facts(facts, dependencies))
            scanned[position] = (result, facts)
            result.facts = facts.summary()
            for dependency in dependencies:
                if dependency.path is None or dependency.soname in SYSTEM_LIBRARIES or is_libpython(dependency.soname):
                    continue
                key = realpath(dependency.path)
                if key in seen:
                    continue
                seen.add(key)
                loaded = _load(dependency.path)
                if isinstance(loaded, str):
                    results.append(FileResult(dependency.path, FileKind.ERROR, error=loaded))
                    continue
                dep_result = _result_for(dependency.path, loaded, FileKind.LIBRARY)
                dep_result.facts["needed_by"] = str(dependency.needed_by)
                results.append(dep_result)
                scanned.append((dep_result, loaded))

    for result, facts in scanned:
        try:
            _run_rules(result, facts, rules, config)
        except Exception as exc:  # noqa: BLE001 - a rule bug must not end the scan
            log.debug("rules failed on %s", result.path, exc_info=True)
            result.kind, result.error, result.findings = FileKind.ERROR, f"cannot analyze {result.path} ({_one_line(exc)})", []

    set_rules = [r for r in rules if hasattr(r.module, "check_set") and config.enabled(r.rule.code)]
    by_path = {str(result.path): result for result, _ in scanned}
    by_path.update({str(facts.path): result for result, facts in scanned})
    live = [(result, facts) for result, facts in scanned if result.kind is not FileKind.ERROR]
    for registered in set_rules:
        try:
            for finding in registered.module.check_set([facts for _, facts in live]):
                target = by_path.get(str(finding.path))
                if target is not None:
                    target.findings.append(finding)
        except Exception:  # noqa: BLE001
            log.debug("set rule %s failed", registered.rule.code, exc_info=True)

    for result in results:
        result.compute_verdicts()
    return results
