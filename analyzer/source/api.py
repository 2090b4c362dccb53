"""What the scan driver calls: source files, a whole model (imports → extensions → plan), package archives."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from interpkit.analyzer.config import Config
from interpkit.core.findings import FileKind, FileResult
from interpkit.analyzer.plumbing.cache import resolve
from interpkit.analyzer.source.imports import ImportReader, ModuleKind, ModuleNames, build_import_graph
from interpkit.analyzer.source.packaging import ModelObject, check_export, plan_packaging, scan_package_archive
from interpkit.analyzer.source.batch import analyze_sources
from interpkit.analyzer.source.batch import analyze_source_files
from interpkit.analyzer.plumbing.workers import Background, lent_workers

__all__ = ["analyze_source_files", "scan_model", "scan_package_archive"]


def scan_model(entries: list[Path], config: Config, *, elf_analyzer: Callable[..., list[FileResult]] | None = None,
               export_check: bool = True, progress: Callable[[int], None] | None = None,
               traced: dict[str, str] | None = None, model: ModelObject | None = None
               ) -> tuple[list[FileResult], dict]:
    """Pre-packaging scan: import graph from `entries`, rules on the model's own .py files (and on
    every reached third-party .py file with config.third_party_source),
    the ELF analyzer on every reached extension, the import chain on each finding outside the
    entries, and the packaging plan (checked by a real export when torch is installed).

    traced: the modules a trace saw loaded (name -> file), which the plan takes in too;
    model: the entry point whose answer the export check pickles."""
    config = config or Config()
    entries = [e if isinstance(e, Path) else Path(e) for e in entries]
    archives = [e for e in entries if e.suffix == ".pt"]
    sources = [e for e in entries if e.suffix != ".pt"]
    results: list[FileResult] = []
    extras: dict = {}
    for archive in archives:
        files, package_extras = scan_package_archive(archive, config)
        results.extend(files)
        extras.setdefault("packages", {})[str(archive)] = package_extras
    if not sources:
        return results, extras

    # The entries' rule pass runs first, on every core, and reads their imports from the same
    # parse, so the graph does not parse them again (progress(n): n more files done).
    entry_files = [e for e in sources if e.is_file()]
    module_names = ModuleNames()   # each entry is named once, for the rule pass, the graph and the reached pass
    reading = {e: (module_names(e)[0], e.name == "__init__.py") for e in entry_files}
    with lent_workers():   # the rule pass's worker processes go on to parse the graph's files
        entry_results, known_imports = analyze_sources(entry_files, config,
                                                       modules={e: m for e, (m, _) in reading.items()},
                                                       import_modules=reading, progress=progress)
        # the files only the graph reaches (installed packages) are parsed ahead of the walk, on every core
        with ImportReader() as imports_of:
            graph = build_import_graph(sources, config, known_imports=known_imports, imports_of=imports_of,
                                       module_names=module_names)
    del known_imports   # every entry's import statements: the graph has them now
    # The plan needs only the graph; its export check (a child that imports torch, seconds) runs
    # while the reached sources and the extensions are analyzed here.
    plan = plan_packaging(graph, traced=traced, model=model)
    # The export imports the tree into the running Python: a tree built for another one
    # (config.target) would fail there for that reason alone, which says nothing of the plan.
    target = config.target
    export = Background(lambda: _remembered_export_check(plan, graph), "interpkit-export-check") \
        if export_check and target is None else None
    _analyze_reached(entry_files, entry_results, graph, config, elf_analyzer, results, module_names)
    plan_json = plan.to_json()
    if export is not None:
        plan_json["export_check"] = export.result()
    elif target is not None:
        plan_json["export_check"] = {"ran": False, "ok": None, "reason": (
            f"the tree is built for CPython {target.short_version}; the export check imports it into the "
            "running Python")}
    else:
        plan_json["export_check"] = {"ran": False, "ok": None, "reason": "export check disabled"}
    extras["imports"] = graph.to_json()
    extras["packaging_plan"] = plan_json
    return results, extras


def _analyze_reached(entry_files: list[Path], entry_results: list[FileResult], graph, config: Config,
                     elf_analyzer, results: list[FileResult], module_names: ModuleNames) -> None:
    """The rules on the reached .py files, the ELF analyzer on the reached extensions and op
    libraries, each with its import chain; appended to results."""
    entry_paths = {resolve(e) for e in entry_files}
    python_nodes = [n for n in graph.nodes.values()
                    if n.kind is ModuleKind.PYTHON and n.path is not None and n.path.suffix == ".py"
                    and (n.local or config.third_party_source)]
    # entries first, in the order given, then everything reached
    ordered: list[Path] = list(entry_files)
    modules = {e: module_names(e)[0] for e in ordered}
    seen = set(entry_paths)
    for node in sorted(python_nodes, key=lambda n: n.name):
        if node.path in seen:
            continue   # an entry's own node: its path is the entry's real path
        real = resolve(node.path)
        if real not in seen:
            seen.add(real)
            ordered.append(node.path)
            modules[node.path] = node.name
    # the reached files are those whose real path is no entry's: only they get a chain
    reached_results = analyze_source_files(ordered[len(entry_files):], config, modules=modules)
    for fr in reached_results:
        if fr.module:
            _attach_chain(fr, graph.chain_to(fr.module))
    results.extend(entry_results + reached_results)

    _report_missing_op_libraries(graph, results, config)
    extensions = [n for n in graph.of_kind(ModuleKind.EXTENSION) if n.path is not None]
    # Op libraries (no PyInit_) reach the process through torch.ops.load_library, not import:
    # scanned like extensions, reached through the module that loads them.
    op_libraries = {str(resolve(load.path)): load for load in graph.op_libraries if load.path is not None and load.exists}
    elf_inputs = [n.path for n in extensions] + [Path(p) for p in op_libraries
                                                  if p not in {str(resolve(n.path)) for n in extensions}]
    if elf_inputs and elf_analyzer is not None:
        by_path = {str(resolve(n.path)): n for n in extensions}
        elf_results = elf_analyzer(elf_inputs, config, closure=config.follow_closure)
        chains: dict[str, tuple[str, ...]] = {}
        for fr in elf_results:
            key = str(resolve(fr.path))
            node = by_path.get(key)
            if node is not None:
                fr.module = fr.module or node.name
                chains[key] = graph.chain_to(node.name)
            elif key in op_libraries:
                load = op_libraries[key]
                fr.facts["loaded_by"] = {"module": load.module, "line": load.line, "call": load.call}
                chains[key] = graph.chain_to(load.module) + (Path(fr.path).name,)
        # libraries of the DT_NEEDED closure: the chain of whoever needed them, then their name
        pending = [fr for fr in elf_results if str(resolve(fr.path)) not in chains and fr.facts.get("needed_by")]
        while pending:
            progressed = False
            for fr in list(pending):
                parent = chains.get(str(resolve(fr.facts["needed_by"])))
                if parent is not None:
                    chains[str(resolve(fr.path))] = parent + (Path(fr.path).name,)
                    pending.remove(fr)
                    progressed = True
            if not progressed:
                break
        for fr in elf_results:
            chain = chains.get(str(resolve(fr.path)))
            if chain:
                _attach_chain(fr, chain)
        results.extend(elf_results)


def _report_missing_op_libraries(graph, results: list[FileResult], config: Config) -> None:
    """IK410 for each load_library path that names no file, on the loading module's entry.

    The rule pass finds what one file shows on its own; this adds what only the graph shows
    (helpers in other modules, installed packages), each (file, line) once."""
    from interpkit.analyzer.registry import rule_named

    rule = rule_named("source", "missing-op-library").module

    if not config.enabled(rule.RULE.code):
        return
    missing = [load for load in graph.op_libraries if load.path is not None and not load.exists]
    if not missing:
        return
    by_path = {str(resolve(fr.path)): fr for fr in results}
    for load in missing:
        key = str(resolve(load.source))
        fr = by_path.get(key)
        if fr is None:
            fr = by_path[key] = FileResult(Path(load.source), FileKind.PYTHON, module=load.module)
            _attach_chain(fr, graph.chain_to(load.module))
            results.append(fr)
        if any(f.code == rule.RULE.code and f.line == load.line for f in fr.findings):
            continue
        fr.findings.append(replace(rule.RULE.finding(Path(load.source), rule.message_for(load), line=load.line, column=1,
                                                     data=rule.data_for(load)),
                                   chain=graph.chain_to(load.module)))
        fr.compute_verdicts()


def _remembered_export_check(plan, graph) -> dict:
    """check_export runs a child that imports torch and every module of the plan (seconds): its
    answer is kept in the scan cache for the same plan, Python and files (each module's path,
    size and mtime), so a warm scan of an unchanged tree does not export again."""
    import sys

    from interpkit.analyzer.plumbing.cache import file_key, remembered
    from interpkit.analyzer.source.packaging import torch_available

    files = sorted(str(n.path) for n in graph.nodes.values() if n.path is not None)
    if torch_available():
        import importlib.util

        files.append(importlib.util.find_spec("torch").origin)
    parts = ["export-check", sys.executable, plan.snippet("ARCHIVE"), plan.save_modules, plan.search_path,
             *(file_key(Path(f)) for f in files)]
    return remembered("export-check-v1", parts, lambda: check_export(plan))


def _attach_chain(fr: FileResult, chain: tuple[str, ...]) -> None:
    """Findings are frozen: replace each with a copy that carries the import chain."""
    if not chain:
        return
    fr.facts["chain"] = list(chain)
    fr.findings = [replace(f, chain=chain) for f in fr.findings]
