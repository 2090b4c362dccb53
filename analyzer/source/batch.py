"""Many Python files at once: a persistent cache, then every core over chunks of what is left.

Each file is read and parsed once (walk.analyze_file): the same CPython parse gives the syntax
error, the import statements for the import graph and the name table that decides which rules
need LibCST. Workers are spawned processes (the parent may hold threads or torch) that take
small chunks and send each chunk's results back as soon as it is done, so memory stays at the
report plus a few chunks in flight, and progress advances as files finish.

The cache is `source-v2.sqlite` in the scan cache folder (interpkit.analyzer.plumbing.cache). An entry is keyed by the file's real
path, size and mtime, the module name it was read as (relative imports depend on it) and a
fingerprint of the tool version, the enabled rules and the analysis code, so a stale entry is
never used: a changed file, rule set or interpkit version misses.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

from interpkit.analyzer.plumbing.cache import Store, code_fingerprint, file_key, resolve
from interpkit.analyzer.config import Config
from interpkit.core.findings import Backend, FileKind, FileResult, Finding, Severity, Verdict

CACHE_NAME = "source-v2"
CHUNK_FILES = 8          # files per work item: small enough that progress and memory stay smooth
POOL_THRESHOLD = 24      # below this, starting worker processes costs more than it saves

ImportModule = tuple[str, bool]   # (dotted module name, is_package) the file is read as


def fingerprint(rules, *, fast: bool) -> str:
    """Changes with the version, the enabled rules and any analysis source file (size, mtime)."""
    from interpkit.analyzer.source import ast_pass, exact_names, imports, names, walk

    files = [Path(m.__file__) for m in (walk, names, imports, ast_pass, exact_names)] + [Path(__file__)]
    files += [Path(__import__(r.visitor.__module__, fromlist=["_"]).__file__) for r in rules]
    return code_fingerprint(files, f"fast={fast}", ",".join(r.code for r in rules))


# -- results as JSON (the cache and the workers' replies) --------------------------------------

def result_to_json(fr: FileResult) -> dict:
    return {
        "kind": fr.kind.value, "error": fr.error,
        "findings": [
            {"code": f.code, "severity": int(f.severity), "message": f.message, "line": f.line,
             "column": f.column, "symbol": f.symbol, "backends": sorted(b.value for b in f.backends),
             "fix": f.fix, "verdicts": [[b.value, v.value] for b, v in f.verdicts],
             "data": [[k, list(v) if isinstance(v, tuple) else v] for k, v in f.data]}
            for f in fr.findings
        ],
    }


def result_from_json(path: Path, data: dict, module: str | None) -> FileResult:
    findings = [
        Finding(code=d["code"], severity=Severity(d["severity"]), message=d["message"], path=path,
                line=d["line"], column=d["column"], symbol=d.get("symbol"),
                backends=frozenset(Backend(b) for b in d["backends"]), fix=d["fix"],
                verdicts=tuple((Backend(b), Verdict(v)) for b, v in d["verdicts"]),
                data=tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in d.get("data", ())))
        for d in data["findings"]
    ]
    fr = FileResult(path, FileKind(data["kind"]), module=module, error=data["error"], findings=findings)
    fr.compute_verdicts()
    return fr


def _refs_to_json(refs) -> list | None:
    if refs is None:
        return None
    return [[r.name, r.line, r.conditional, r.type_checking, r.lazy, list(r.from_names)] for r in refs]


def _refs_from_json(rows) -> list | None:
    if rows is None:
        return None
    from interpkit.analyzer.source.imports import ImportRef

    return [ImportRef(name, line, conditional, type_checking, lazy, tuple(from_names))
            for name, line, conditional, type_checking, lazy, from_names in rows]


# -- the worker side ----------------------------------------------------------------------------

_WORKER_RULES: dict = {}


def _run_chunk(job: tuple[list[tuple[str, ImportModule | None]], Config, bool]) -> list[str]:
    """Analyze a few files in a worker process; one JSON text per file (result and imports)."""
    from interpkit.analyzer.plumbing.gc_pause import gc_paused
    from interpkit.analyzer.source.walk import analyze_file, source_rules

    items, config, fast = job
    rules = _WORKER_RULES.get(config)
    if rules is None:
        rules = _WORKER_RULES[config] = source_rules(config)
    out = []
    for path, imported_as in items:
        with gc_paused():   # one file's ast has no cycles: the collector would only walk it
            outcome = analyze_file(Path(path), config, rules=rules, fast=fast, import_module=imported_as)
        out.append(json.dumps({"result": result_to_json(outcome.result), "imports": _refs_to_json(outcome.imports)}))
    return out


# -- many files -------------------------------------------------------------------------------

def analyze_sources(paths: list[Path], config: Config, *, modules: dict[Path, str] | None = None,
                    import_modules: dict[Path, ImportModule] | None = None, jobs: int | None = None,
                    cache: bool = True, fast: bool = True,
                    progress: Callable[[int], None] | None = None) -> tuple[list[FileResult], dict]:
    """Results in the order of `paths`, and {resolved path: ((module, is_package), import refs)}
    for the files named in `import_modules` (what build_import_graph's known_imports takes).

    `jobs` defaults to every core (os.cpu_count()) once there are enough files to pay for the
    workers' start-up; progress(n) is called as n more files are done.
    """
    from interpkit.analyzer.source.walk import source_rules

    config = config or Config()
    modules = modules or {}
    import_modules = import_modules or {}
    rules = source_rules(config)
    store = Store(CACHE_NAME, enabled=cache)
    print_ = fingerprint(rules, fast=fast) if store.enabled else ""
    paths = [Path(p) for p in paths]
    keys = [file_key(p, import_modules.get(p), print_) if store.enabled else None for p in paths]
    cached = store.get_many([k for k in keys if k])
    replies: list[str | None] = [cached.get(k) if k else None for k in keys]
    todo = [i for i, reply in enumerate(replies) if reply is None]
    if progress is not None and len(paths) - len(todo):
        progress(len(paths) - len(todo))

    fresh: list[tuple[str, str]] = []
    for index, reply in _analyze(todo, paths, import_modules, config, fast, jobs, progress):
        replies[index] = reply
        if keys[index]:
            fresh.append((keys[index], reply))
    store.put_many(fresh)
    store.close()

    results: list[FileResult] = []
    imports: dict = {}
    for path, reply in zip(paths, replies):
        data = json.loads(reply)
        results.append(result_from_json(path, data["result"], modules.get(path)))
        if path in import_modules and data["imports"] is not None:
            imports[resolve(path)] = (import_modules[path], _refs_from_json(data["imports"]))   # one_scan's memo
    return results, imports


def analyze_source_files(paths: list[Path], config: Config, *, modules: dict[Path, str] | None = None,
                         jobs: int | None = None, cache: bool = True, fast: bool = True,
                         progress: Callable[[int], None] | None = None) -> list[FileResult]:
    """Scan Python files (kind=python); a syntax error is one IK901 finding, an undecodable file kind=error."""
    return analyze_sources(paths, config, modules=modules, jobs=jobs, cache=cache, fast=fast, progress=progress)[0]


def _analyze(todo: list[int], paths: list[Path], import_modules: dict, config: Config, fast: bool,
             jobs: int | None, progress: Callable[[int], None] | None) -> Iterator[tuple[int, str]]:
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    chunks = [todo[i:i + CHUNK_FILES] for i in range(0, len(todo), CHUNK_FILES)]
    if jobs > 1 and len(todo) >= POOL_THRESHOLD:
        import concurrent.futures

        from interpkit.analyzer.plumbing.workers import worker_pool

        pool, owned = worker_pool(min(jobs, len(chunks)))   # lent on to the import graph inside lent_workers()
        pending: dict = {}
        try:
            pending = {pool.submit(_run_chunk, (_items(chunk, paths, import_modules), config, fast)): chunk
                       for chunk in chunks}
            for future in concurrent.futures.as_completed(pending):
                chunk = pending.pop(future)
                yield from zip(chunk, future.result())
                if progress is not None:
                    progress(len(chunk))
        finally:
            for future in pending:
                future.cancel()
            if owned:
                pool.shutdown(wait=True, cancel_futures=True)
        return
    for chunk in chunks:
        yield from zip(chunk, _run_chunk((_items(chunk, paths, import_modules), config, fast)))
        if progress is not None:
            progress(len(chunk))


def _items(chunk: list[int], paths: list[Path], import_modules: dict) -> list[tuple[str, ImportModule | None]]:
    return [(str(paths[i]), import_modules.get(paths[i])) for i in chunk]
