"""torch.package: a packaging plan from the import graph, a real export check, and reading `.pt` archives.

The plan sorts top-level packages the way `PackageExporter` needs them: the model's own code
and pure-Python dependencies are `intern`ed, extension-backed packages and the standard
library are `extern`ed (an archive cannot carry a `.so`), and modules that are missing here
or only imported for type checking are `mock`ed. The check runs the very snippet we print,
in a child process with a timeout, because `PackageExporter` imports what it interns.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath

from interpkit.analyzer.plumbing.archive import check_archive, open_archive, read_member, serialized_torch_format
from interpkit.analyzer.config import Config
from interpkit.core.errors import ArchiveError
from interpkit.core.findings import FileKind, FileResult
from interpkit.analyzer.source.imports import ImportGraph, ModuleKind, package_has_extension
from interpkit.analyzer.source.installed import editable_project_of

# where the model goes in the archive: serve/server.py serves this resource
MODEL_PACKAGE, MODEL_RESOURCE = "interpkit", "model.pkl"
# torch.package's importer provides these itself; every other standard-library module,
# sys and io included, must be extern'ed or an interned module that imports it fails to export
# ("Module had no __file__ defined ... add it to extern: exporter.extern('sys')").
_NEVER_EXTERN = frozenset({"builtins", "__future__"})
MAX_PY_MEMBER = 16 << 20


@dataclass(frozen=True)
class ModelObject:
    """The model the plan must package: `module.callable()` returns it (`--trace model.py:build`).
    The export check pickles what it returns, so "export ok" means the model itself packages,
    not only its module."""
    module: str
    callable: str

    @property
    def label(self) -> str:
        return f"{self.module}:{self.callable}"


@dataclass
class PackagingPlan:
    intern: list[str] = field(default_factory=list)
    extern: list[str] = field(default_factory=list)
    mock: list[str] = field(default_factory=list)
    save_modules: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)   # top-level name → why it went where it did
    search_path: list[str] = field(default_factory=list)
    model: ModelObject | None = None

    def snippet(self, archive: str = "model.pt") -> str:
        lines = ["from torch.package import PackageExporter", ""]
        if self.model is not None:
            lines[1:1] = [f"from {self.model.module} import {self.model.callable.partition('.')[0]}"]
        lines.append(f"with PackageExporter({archive!r}) as exporter:")
        for action, patterns in (("extern", self.extern), ("mock", self.mock), ("intern", self.intern)):
            if patterns:
                lines.append(f"    exporter.{action}({patterns!r})")
        for module in self.save_modules:
            lines.append(f"    exporter.save_module({module!r})")
        if self.model is not None:
            lines.append(f"    exporter.save_pickle({MODEL_PACKAGE!r}, {MODEL_RESOURCE!r}, {self.model.callable}())")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {"intern": self.intern, "extern": self.extern, "mock": self.mock,
                "save_modules": self.save_modules, "reasons": dict(sorted(self.reasons.items())),
                "model": self.model.label if self.model else None, "snippet": self.snippet()}


def _patterns(top: str, is_package: bool) -> list[str]:
    return [top, f"{top}.**"] if is_package else [top]


def plan_packaging(graph: ImportGraph, *, traced: dict[str, str] | None = None,
                   model: ModelObject | None = None) -> PackagingPlan:
    """traced: what a trace saw loaded (name -> file), planned with the graph's modules, so a
    package only the trace reached is extern'ed rather than mocked. model: the object to pickle."""
    plan = PackagingPlan(search_path=list(graph.search_path), model=model)
    by_top: dict[str, list] = {}
    for node in [*graph.nodes.values(), *graph.traced_nodes(traced or {})]:
        by_top.setdefault(node.top_level, []).append(node)
    for top in sorted(by_top):
        nodes = by_top[top]
        head = next((n for n in nodes if n.name == top), nodes[0])
        is_package = head.is_package or len(nodes) > 1
        kinds = {n.kind for n in nodes}
        if all(n.kind is ModuleKind.STDLIB for n in nodes):
            if top not in _NEVER_EXTERN:
                plan.extern.append(top)
                plan.reasons[top] = "standard library"
            continue
        if top == "torch":
            plan.extern += _patterns(top, True)
            plan.reasons[top] = "torch itself (always extern)"
            continue
        if ModuleKind.EXTENSION in kinds:
            plan.extern += _patterns(top, is_package)
            ext = next(n.name for n in nodes if n.kind is ModuleKind.EXTENSION)
            plan.reasons[top] = f"extension-backed ({ext})"
            continue
        if kinds == {ModuleKind.MISSING}:
            plan.mock += _patterns(top, True)
            plan.reasons[top] = "not installed here" + (" (imported under a guard)" if head.conditional else "")
            continue
        if all(n.kind is ModuleKind.NAMESPACE for n in nodes):
            # no file to intern ("Module had no __file__ defined"): an editable checkout's root
            # beside the model is one (docs/facts.md fact 12); the host imports it the same way
            plan.extern += _patterns(top, True)
            plan.reasons[top] = "namespace package without modules of its own"
            continue
        if all(n.type_checking_only for n in nodes if n.name == top) and not any(n.local for n in nodes):
            plan.mock += _patterns(top, is_package)
            plan.reasons[top] = "imported only for type checking"
            continue
        loader = next((load for load in graph.op_libraries if load.module.partition(".")[0] == top and load.exists), None)
        if loader is not None and not any(n.local for n in nodes):
            plan.extern += _patterns(top, is_package)
            plan.reasons[top] = f"loads an op library ({Path(loader.path).name})"
            continue
        # a namespace package (google, from protobuf) has no file of its own: its modules say
        # which distribution put it there
        located = next((n.path for n in sorted(nodes, key=lambda n: n.name != top) if n.path is not None), None)
        installed = _installed_distribution(located) if not any(n.local for n in nodes) else None
        if installed is not None:
            # Interning an installed package copies its source into every archive and makes
            # the exporter import all of it; the serving host has it installed anyway.
            plan.extern += _patterns(top, is_package)
            plan.reasons[top] = f"installed distribution {installed}"
            continue
        if not any(n.local for n in nodes) and head.path is not None and head.is_package \
                and package_has_extension(head.path.parent):
            # imports were not followed this deep, but the folder carries compiled code
            plan.extern += _patterns(top, True)
            plan.reasons[top] = "package folder contains compiled extensions"
            continue
        plan.intern += _patterns(top, is_package)
        plan.reasons[top] = "the model's own code" if any(n.local for n in nodes) else "pure Python"
    plan.save_modules = list(graph.roots)
    return plan


def _installed_distribution(path: Path | None) -> str | None:
    """`name version` of the distribution that installed the module at path, or None when it
    is neither under a site-packages folder nor in an editable install's checkout (the model's
    own code, a --python-path folder)."""
    if path is None:
        return None
    editable = editable_project_of(path)
    if editable is not None:
        return editable[1]
    for parent in Path(path).parents:
        if parent.name in ("site-packages", "dist-packages"):
            top = Path(path).relative_to(parent).parts[0]
            top = top.split(".", 1)[0] if top.endswith((".py", ".so")) else top
            return _distributions_in(parent).get(top, "(no metadata)")
    return None


@cache
def _distributions_in(site_packages: Path) -> dict[str, str]:
    """Top-level import name -> `name version`, from each .dist-info in one site-packages."""
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(site_packages)]):
        try:
            # dist.version is dist.metadata['Version'], and each .metadata parses METADATA anew
            fields = dist.metadata
            label = f"{fields['Name']} {fields['Version']}"
            tops = (dist.read_text("top_level.txt") or "").split()
            if not tops:
                # each entry of dist.files is a PurePosixPath already (PackagePath)
                tops = sorted({f.parts[0].split(".")[0] for f in (dist.files or [])
                               if not str(f).startswith(("..", "/")) and ".dist-info" not in str(f)})
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for name in tops:
            out.setdefault(name, label)
    return out


def _check_script(plan: PackagingPlan) -> str:
    """The printed snippet, framed to export into argv[2] and then load each saved module (and
    the pickled model) back."""
    snippet = plan.snippet("ARCHIVE").replace("PackageExporter('ARCHIVE')", "PackageExporter(archive)")
    if plan.model is not None:
        # the object the entry point returns is what gets pickled: say what it was
        call = f"{plan.model.callable}()"
        snippet = snippet.replace(
            f", {call})\n",
            f", _interpkit_model)\n").replace(
            "    exporter.save_pickle(",
            f"    _interpkit_model = {call}\n"
            "    print('INTERPKIT-MODEL ' + json.dumps({'model_type': None if _interpkit_model is None else "
            "type(_interpkit_model).__module__ + '.' + type(_interpkit_model).__qualname__}), flush=True)\n"
            "    exporter.save_pickle(", 1)
    return "\n".join([
        "import json, sys, time",
        "sys.path[:0] = json.loads(sys.argv[1])",
        "archive = sys.argv[2]",
        "t0 = time.perf_counter()",
        snippet,
        "print('INTERPKIT-EXPORTED ' + json.dumps({'export_seconds': round(time.perf_counter() - t0, 3)}), flush=True)",
        "from torch.package import PackageImporter",
        "importer = PackageImporter(archive)",
        f"for name in {plan.save_modules!r}:",
        "    importer.import_module(name)",
        *([f"importer.load_pickle({MODEL_PACKAGE!r}, {MODEL_RESOURCE!r})"] if plan.model is not None else []),
        "print('INTERPKIT-IMPORTED ' + json.dumps({'modules': sorted(importer.modules)[:200]}), flush=True)",
    ]) + "\n"


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def check_export(plan: PackagingPlan, *, timeout: float = 180.0, python: str = sys.executable) -> dict:
    """Export with the printed snippet in a child process; a one-line reason when it fails or cannot run."""
    if not torch_available():
        return {"ran": False, "ok": None, "reason": "torch is not installed"}
    if not plan.save_modules:
        return {"ran": False, "ok": None, "reason": "no entry module to save"}
    with tempfile.TemporaryDirectory(prefix="interpkit-export-") as tmp:
        archive = os.path.join(tmp, "model.pt")
        script_path = Path(tmp) / "export_check.py"
        script_path.write_text(_check_script(plan))
        started = time.perf_counter()
        try:
            proc = subprocess.run([python, str(script_path), json.dumps(plan.search_path), archive],
                                  capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            return {"ran": True, "ok": False, "reason": f"export did not finish in {timeout:.0f} s"}
        out: dict = {"ran": True, "seconds": round(time.perf_counter() - started, 2)}
        for line in proc.stdout.splitlines():
            if line.startswith("INTERPKIT-EXPORTED "):
                out.update(json.loads(line.split(" ", 1)[1]))
                out["archive_bytes"] = os.path.getsize(archive) if os.path.exists(archive) else 0
            elif line.startswith("INTERPKIT-MODEL "):
                out.update(json.loads(line.split(" ", 1)[1]))
            elif line.startswith("INTERPKIT-IMPORTED "):
                out["loaded_modules"] = json.loads(line.split(" ", 1)[1])["modules"]
        out["ok"] = "export_seconds" in out             # the export itself succeeded
        out["loads"] = "loaded_modules" in out          # and the archive imports back
        if plan.model is not None:
            out["model"] = plan.model.label
        if proc.returncode != 0:
            out["reason"] = _last_error_line(proc.stderr)
        elif plan.model is not None and out.get("model_type", "") is None:
            out["reason"] = f"{plan.model.label}() returned None: nothing but the modules was packaged"
        return out


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return "export failed (no error output)"
    for index in range(len(lines) - 1, -1, -1):
        head, colon, message = lines[index].partition(":")
        if "Error" in head and colon:
            if message.strip():
                return lines[index][:300]
            # PackagingError prints an empty first line and lists what is wrong after it
            # ("* Module did not match against any action pattern ...", then the modules).
            details = "; ".join(lines[index + 1:index + 7])
            return f"{head.rpartition('.')[2]}: {details}"[:300] if details else lines[index][:300]
    return lines[-1][:300]


# -- existing archives ------------------------------------------------------------------------

def scan_package_archive(archive: Path, config: Config) -> tuple[list[FileResult], dict]:
    """Scan the .py sources inside a torch.package archive, in memory (nothing is extracted)."""
    from interpkit.analyzer.source.walk import scan_source_bytes, source_rules

    archive = Path(archive)
    other = serialized_torch_format(archive)
    if other is not None:  # TorchScript or torch.save data: reported as what it is, not as unreadable
        from interpkit.analyzer.registry import rule_named

        rule = rule_named("inputs", "serialized-model-not-package").module

        head = FileResult(archive, FileKind.ARCHIVE, facts={"format": other},
                          findings=[f for f in rule.check(archive, other) if config.keep(f)])
        head.compute_verdicts()
        return [head], {"format": other}
    try:
        with open_archive(archive) as zf:
            members = check_archive(zf, archive)
            prefixes = {PurePosixPath(m.filename).parts[0] for m in members if PurePosixPath(m.filename).parts}
            if not any(m.filename.endswith("/.data/version") for m in members):
                raise ArchiveError(f"cannot read {archive} (not a torch.package archive: no .data/version)")
            extern_modules: list[str] = []
            results: list[FileResult] = []
            rules = source_rules(config)
            for info in members:
                name = info.filename
                parts = PurePosixPath(name).parts
                if name.endswith("/.data/extern_modules"):
                    extern_modules = read_member(zf, info, archive).decode("utf-8", "replace").split()
                if not name.endswith(".py") or len(parts) < 2 or parts[1] == ".data":
                    continue
                if info.file_size > MAX_PY_MEMBER:
                    results.append(FileResult(Path(f"{archive}!{name}"), FileKind.ERROR,
                                              error=f"cannot scan {archive}!{name} (source larger than 16 MiB)"))
                    continue
                module_parts = list(parts[1:])
                module_parts[-1] = module_parts[-1][:-3]
                if module_parts[-1] == "__init__":
                    module_parts.pop()
                data = read_member(zf, info, archive)
                results.append(scan_source_bytes(Path(f"{archive}!{name}"), data, config, rules=rules,
                                                 module=".".join(module_parts) or None))
    except ArchiveError as exc:
        return [FileResult(archive, FileKind.ERROR, error=str(exc))], {}
    facts = {"python_sources": len(results), "extern_modules": extern_modules, "prefix": sorted(prefixes)}
    head = FileResult(archive, FileKind.ARCHIVE, facts=facts)
    head.compute_verdicts()
    return [head, *results], {"extern_modules": extern_modules, "python_sources": len(results)}
