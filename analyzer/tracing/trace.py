"""`scan --trace`: import the model (and call its entry point) in a sandboxed child, record what loaded.

The static import graph cannot see imports made at run time (lazy-module machinery such as
transformers' `_LazyModule`, `importlib.import_module(name_from_config)`, plugins) nor
libraries mapped by `dlopen`. The trace imports the entry module in a child process
(interpkit.native.sandbox: timeout, own process group, killed with its children) running
analyzer/tracing/child.py, optionally calls `module.callable()`, and records every module in
`sys.modules` with a file and every shared object in `/proc/self/maps`. That is unioned with
the static scan: extensions and shared objects only the trace found are scanned like the
rest (with their DT_NEEDED closure) and marked `found_by: trace`; the report's `trace` key
lists them. Nothing here knows any package by name.

A model that raises, crashes or hangs in the trace is one error entry with the cause, and
the scan's other results stand.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from interpkit.analyzer.config import Config
from interpkit.core.errors import InputError
from interpkit.core.findings import FileKind, FileResult, Report
from interpkit.native import guest

DEFAULT_TIMEOUT_S = 300.0
_CHILD = Path(__file__).resolve().parent / "child.py"
_CHANNEL = Path(guest.__file__).resolve().with_name("channel.py")
# Folders whose libraries are the system's (glibc, libstdc++, ...): loaded by everything,
# shared by design, not something a model brings.
_SYSTEM_PREFIXES = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")


@dataclass(frozen=True)
class TraceTarget:
    entry: Path
    callable: str | None = None

    @property
    def label(self) -> str:
        return f"{self.entry}:{self.callable}" if self.callable else str(self.entry)


@dataclass(frozen=True)
class Trace:
    target: TraceTarget
    modules: dict[str, str]             # name -> file, from the child's sys.modules
    shared_objects: tuple[str, ...]     # from the child's /proc/self/maps
    extension_suffixes: tuple[str, ...]
    error: str | None                   # the model raised / crashed / hung: why
    seconds: float
    stdlib: tuple[str, ...] = ()        # the child Python's standard-library folders
    site: tuple[str, ...] = ()          # and its site-packages
    preloaded: frozenset[str] = frozenset()   # loaded at start-up, before the child's work

    @property
    def extensions(self) -> dict[str, str]:
        """Imported extension modules, name -> file; the standard library's own (lib-dynload)
        are left out, as the static graph records but never scans them."""
        return {name: path for name, path in self.modules.items()
                if path.endswith(self.extension_suffixes) and not self.in_stdlib(path)}

    def modules_of_the_model(self) -> dict[str, str]:
        """The loaded modules an archive of the model could need, name -> file: not the child's
        own (its script as __main__, the sandbox's record channel), not what start-up loaded
        (an editable install's finder), not the standard library's files (_sysconfigdata_*,
        named like no importable module), only importable names."""
        own = {_real(_CHILD), _real(_CHANNEL)}
        return {name: path for name, path in self.modules.items()
                if name not in ("__main__", "__mp_main__") and name not in self.preloaded
                and all(p.isidentifier() for p in name.split("."))
                and _real(path) not in own and not self.in_stdlib(path)}

    def in_stdlib(self, path: str) -> bool:
        real = _real(path)
        inside = lambda folders: any(real.startswith(f.rstrip(os.sep) + os.sep) for f in folders)  # noqa: E731
        return inside(self.stdlib) and not inside(self.site)


def parse_target(text: str) -> TraceTarget:
    """`model.py` or `model.py:build` (a dotted attribute path after the last colon)."""
    path, colon, attribute = text.rpartition(":")
    if colon and path and all(part.isidentifier() for part in attribute.split(".")):
        return TraceTarget(Path(path), attribute)
    return TraceTarget(Path(text))


def targets_for(option: str | bool, paths: list[Path]) -> list[TraceTarget]:
    """`--trace` alone traces every .py path named on the command line; `--trace x.py:f` that one."""
    if option is True:
        targets = [TraceTarget(Path(p)) for p in paths if Path(p).suffix == ".py" and Path(p).is_file()]
        if not targets:
            raise InputError("cannot trace (no model .py file among the paths; name one: --trace model.py[:callable])")
        return targets
    target = parse_target(str(option))
    if target.entry.suffix != ".py" or not target.entry.is_file():
        raise InputError(f"cannot trace {target.entry} (not a Python source file)")
    return [target]


def run_trace(target: TraceTarget, config: Config, *, python: str = sys.executable,
              timeout: float = DEFAULT_TIMEOUT_S) -> Trace:
    """Import (and call) the target in a sandboxed child; never raises for what the model does."""
    from interpkit.analyzer.source.imports import module_name_for
    from interpkit.native import sandbox

    module, root = module_name_for(target.entry)
    sys_path = [str(root)] + [str(Path(p).resolve()) for p in config.python_paths]
    # The child's record channel is guest code loaded by path: nothing of interpkit is
    # imported there, so every module it reports is the model's or its libraries'.
    job = {"sandbox": str(_CHANNEL), "sys_path": sys_path, "module": module,
           "callable": target.callable}
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    started = time.perf_counter()
    run = sandbox.run([python, "-X", "faulthandler", str(_CHILD)], job,
                      limits=sandbox.Limits(timeout_s=timeout), env=env, cwd=str(root))
    seconds = round(time.perf_counter() - started, 2)
    result = run.last("result")
    if result is None:
        stage = "calling " + target.callable if run.last("imported") and target.callable else "importing the model"
        cause = run.ending.cause()
        error = f"the trace {run.ending.describe()} while {stage}" + (f": {cause}" if cause else "")
        return Trace(target, {}, (), (), error, seconds)
    error = None
    if result.get("error"):
        failure = result["error"]
        error = f"the model raised while {'importing' if failure['stage'] == 'import' else 'calling ' + str(target.callable)}: {failure['error']}"
    return Trace(target, dict(result.get("modules") or {}), tuple(result.get("shared_objects") or ()),
                 tuple(result.get("extension_suffixes") or ()), error, seconds,
                 tuple(result.get("stdlib") or ()), tuple(result.get("site") or ()),
                 frozenset(result.get("preloaded") or ()))


def _real(path) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return str(path)


def model_input(traces: list[Trace]):
    """What the scan takes from the traces: every module they saw loaded (for the packaging
    plan) and the first entry point named with a callable (the model the export check pickles)."""
    from interpkit.analyzer.scan import ModelInput
    from interpkit.analyzer.source.imports import module_name_for
    from interpkit.analyzer.source.packaging import ModelObject

    traced: dict[str, str] = {}
    for trace in traces:
        traced.update(trace.modules_of_the_model())
    called = next((t.target for t in traces if t.target.callable), None)
    entry_point = ModelObject(module_name_for(called.entry)[0], called.callable) if called else None
    return ModelInput(traced=traced, entry_point=entry_point)


def with_trace(report: Report, targets: list[TraceTarget], config: Config, *,
               python: str = sys.executable, timeout: float = DEFAULT_TIMEOUT_S) -> Report:
    """Run each trace; the report with what they loaded (see with_traces)."""
    return with_traces(report, [run_trace(t, config, python=python, timeout=timeout) for t in targets], config)


def with_traces(report: Report, traces: list[Trace], config: Config) -> Report:
    """A new report: the scan's files, then what each trace loaded that the scan did not reach,
    and the traces' summaries as `extras["trace"]`. The scan's report is left as it was built
    (it may be the scan cache's entry)."""
    added, summaries = _trace_contribution(report, traces, config)
    return Report(files=[*report.files, *added], extras={**report.extras, "trace": summaries})


def _trace_contribution(report: Report, traces: list[Trace], config: Config) -> tuple[list[FileResult], list[dict]]:
    """The files the traces add to the report, in trace order, and one summary per trace."""
    from interpkit.analyzer.elf.analyze import analyze_elf_files
    from interpkit.analyzer.elf.closure import is_libpython

    static = {_real(fr.path) for fr in report.files if fr.kind in (FileKind.EXTENSION, FileKind.LIBRARY)}
    contributed: list[FileResult] = []
    summaries = []
    for trace in traces:
        target = trace.target
        if trace.error:
            contributed.append(FileResult(target.entry, FileKind.ERROR, error=f"cannot trace {target.label} ({trace.error})"))
        by_file = {_real(path): name for name, path in trace.extensions.items()}
        extensions = sorted(path for path in by_file if path not in static)
        libraries = sorted({_real(p) for p in trace.shared_objects} - static - set(by_file)
                           - {p for p in map(_real, trace.shared_objects)
                              if p.startswith(_SYSTEM_PREFIXES) or trace.in_stdlib(p)
                              or is_libpython(os.path.basename(p))})   # the interpreter itself
        new = [Path(p) for p in extensions + libraries]
        added: list[FileResult] = []
        if new:
            for fr in analyze_elf_files(new, config, closure=config.follow_closure):
                key = _real(fr.path)
                if key in static:
                    continue        # reached statically through another file's closure
                static.add(key)
                fr.facts["found_by"] = "trace"
                if key in by_file:
                    fr.module = by_file[key]
                    chain = ("trace", target.label, by_file[key])
                else:
                    chain = ("trace", target.label, Path(fr.path).name)
                fr.facts["chain"] = list(chain)
                fr.findings = [replace(f, chain=chain) for f in fr.findings if config.keep(f)]
                fr.compute_verdicts()
                added.append(fr)
        contributed.extend(added)
        static_modules = {m["name"] for m in (report.extras.get("imports") or {}).get("modules", [])}
        summaries.append({
            "target": target.label, "ok": trace.error is None, "error": trace.error, "seconds": trace.seconds,
            "modules": len(trace.modules), "shared_objects": len(trace.shared_objects),
            "extensions": len(trace.extensions),
            "modules_only_in_trace": len(set(trace.modules) - static_modules) if static_modules else None,
            "extensions_only_in_trace": sorted(by_file[p] for p in extensions),
            "shared_objects_only_in_trace": [p for p in libraries],
        })
    return contributed, summaries
