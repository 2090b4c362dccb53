"""Settings from [tool.interpkit] and the command line, and `# interpkit: ignore[...]` comments."""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.core.findings import Backend, Finding, Severity
from interpkit.analyzer.registry import code_matches


@dataclass(frozen=True)
class Config:
    select: tuple[str, ...] = ("ALL",)
    ignore: tuple[str, ...] = ()
    fail_on: Severity = Severity.ERROR
    follow_closure: bool = True       # walk DT_NEEDED dependencies of extensions
    follow_imports: bool = True       # walk imports from model source into installed packages
    # Rule-scan the Python source of installed third-party packages the model reaches, not only
    # the model's own files (thousands of files for torch: slow until the cache is warm).
    third_party_source: bool = False
    python_paths: tuple[str, ...] = ()  # extra sys.path entries for import resolution
    interpreters: tuple[str, ...] = field(default_factory=tuple)  # other Pythons (3.12/3.13)
    # The runtimes the user serves with (`--backend`, [tool.interpkit] backend): a finding that
    # affects none of them is not reported and sets no exit status. Empty: every backend.
    backends: tuple[Backend, ...] = ()
    # `scan --python PATH|X.Y`: the Python the scanned tree is judged for (default: inferred from
    # the tree, else the running one); `target` is what the scan resolved it to
    # (source.target_python.TargetPython), set by the scan driver.
    python: str | None = None
    target: object = None

    def enabled(self, code: str) -> bool:
        return code_matches(code, self.select) and not code_matches(code, self.ignore)

    def keep(self, finding: Finding) -> bool:
        if not self.enabled(finding.code):
            return False
        # a finding naming no backend (a model-source hazard, an unreadable input) concerns all
        return not self.backends or not finding.backends or not finding.backends.isdisjoint(self.backends)

    def with_cli(self, *, select=None, ignore=None, extend_ignore=None, fail_on=None, backends=None) -> "Config":
        cfg = self
        if backends:
            cfg = replace(cfg, backends=tuple(backends))
        if select:
            cfg = replace(cfg, select=tuple(select))
        if ignore:
            cfg = replace(cfg, ignore=tuple(cfg.ignore) + tuple(ignore))
        if fail_on:
            cfg = replace(cfg, fail_on=Severity.parse(fail_on))
        return cfg


def parse_backends(value) -> tuple[Backend, ...]:
    """"namespaces", "namespaces,copies" or a list of names; ValueError names the choices."""
    names = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for name in (str(n).strip().lower() for n in names):
        if not name:
            continue
        try:
            out.append(Backend(name))
        except ValueError:
            raise ValueError(f"unknown backend {name!r} (use {', '.join(b.value for b in Backend)})") from None
    return tuple(dict.fromkeys(out))


def _split_codes(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(v).strip().upper() for v in value if str(v).strip())


def find_pyproject(start: Path) -> Path | None:
    try:
        start = start.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError on 3.11): look from where it sits
        start = Path(os.path.abspath(start))
    for folder in [start, *start.parents] if start.is_dir() else [start.parent, *start.parent.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(pyproject: Path | None) -> Config:
    """Read [tool.interpkit]; a broken pyproject.toml is an input error (exit 2)."""
    if pyproject is None:
        return Config()
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read {pyproject} ({exc})") from None
    section = data.get("tool", {}).get("interpkit", {})
    if not isinstance(section, dict):
        raise InputError(f"cannot use [tool.interpkit] in {pyproject} (not a table)")
    cfg = Config()
    try:
        if "select" in section:
            cfg = replace(cfg, select=_split_codes(section["select"]))
        if "ignore" in section:
            cfg = replace(cfg, ignore=_split_codes(section["ignore"]))
        if "fail-on" in section:
            cfg = replace(cfg, fail_on=Severity.parse(str(section["fail-on"])))
        if "follow-closure" in section:
            cfg = replace(cfg, follow_closure=bool(section["follow-closure"]))
        if "follow-imports" in section:
            cfg = replace(cfg, follow_imports=bool(section["follow-imports"]))
        if "third-party-source" in section:
            cfg = replace(cfg, third_party_source=bool(section["third-party-source"]))
        if "python-paths" in section:
            cfg = replace(cfg, python_paths=tuple(map(str, section["python-paths"])))
        if "backend" in section:
            cfg = replace(cfg, backends=parse_backends(section["backend"]))
        if "interpreters" in section:
            cfg = replace(cfg, interpreters=tuple(map(str, section["interpreters"])))
        if "python" in section:   # what `scan --python` sets: the Python the tree is judged for
            cfg = replace(cfg, python=str(section["python"]))
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot use [tool.interpkit] in {pyproject} ({exc})") from None
    return cfg


# `# interpkit: ignore` (all codes) or `# interpkit: ignore[IK402, IK404]`
_SUPPRESS_RE = re.compile(r"#\s*interpkit:\s*ignore(?:\[(?P<codes>[A-Za-z0-9_,\s]*)\])?")


def suppressed_codes(line_text: str) -> tuple[str, ...] | None:
    """None: nothing suppressed; () : every code; otherwise the listed codes."""
    match = _SUPPRESS_RE.search(line_text)
    if match is None:
        return None
    codes = match.group("codes")
    return () if codes is None else _split_codes(codes)


def is_suppressed(finding: Finding, source_lines: list[str]) -> bool:
    if finding.line is None or not (1 <= finding.line <= len(source_lines)):
        return False
    codes = suppressed_codes(source_lines[finding.line - 1])
    if codes is None:
        return False
    return codes == () or code_matches(finding.code, codes)
