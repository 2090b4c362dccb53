"""One LibCST pass per Python file: every enabled source rule rides the same batched traversal.

Rules subclass `SourceRule` (a read-only `BatchableCSTVisitor`), name the nodes they care about
with `visit_*` methods, resolve spellings with `QualifiedNameProvider` (so `from ctypes import
CDLL as L` and `import os as o` match like the literal names) and report through `self.report`.

Cost model (measured on torch's own sources, see bench/scan_speed.py): a LibCST parse plus the
scope/qualified-name metadata is 10-30x slower than CPython's own parser. So each file is first
compiled by CPython (which also gives the syntax-error line, IK901) and only handed to LibCST when
its text contains a trigger of at least one enabled rule; results are cached by (path, size, mtime).
"""
from __future__ import annotations

import ast
import codecs
import hashlib
import io
import json
import os
import re
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Collection, Iterable

import libcst as cst
from libcst._metadata_dependent import LazyValue
from libcst.metadata import (
    MetadataWrapper,
    PositionProvider,
    QualifiedNameProvider,
    ScopeProvider,
)

from interpkit.analyzer.config import Config, is_suppressed
from interpkit.core.findings import Backend, FileKind, FileResult, Finding, Severity, Verdict
from interpkit.analyzer.registry import RegisteredRule, Rule, rule_named, rules_for


class FileContext:
    """Per-file state shared by all rule visitors of one pass: the metadata wrapper and alias names.

    Metadata is resolved lazily and at most once per file: scope analysis and qualified names
    cost ~8x the parse, so they are computed only when some node's last name component could
    match what a rule looks for (its own spelling, or a local `as` alias of the file).
    """

    def __init__(self, wrapper: MetadataWrapper, text: str) -> None:
        self.wrapper = wrapper
        self.aliases = frozenset(alias for statement in _IMPORT_RE.findall(text)
                                 for alias in _ALIAS_RE.findall(statement))

    def _value(self, provider, node: cst.CSTNode, default):
        value = self.wrapper.resolve(provider).get(node, default)
        # providers may store LazyValue thunks; MetadataDependent.get_metadata unwraps them the same way
        return value() if isinstance(value, LazyValue) else value

    def qualified_names(self, node: cst.CSTNode) -> set[str]:
        return {q.name for q in self._value(QualifiedNameProvider, node, ())}

    def scope(self, node: cst.CSTNode):
        return self._value(ScopeProvider, node, None)

    def position(self, node: cst.CSTNode) -> tuple[int, int]:
        start = self.wrapper.resolve(PositionProvider)[node].start
        return start.line, start.column + 1


# `import a.b as x` / `from a import (b as y, ...)`: only import aliases rename what rules look for
_IMPORT_RE = re.compile(r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+(\([^)]*\)|[^\n]*)", re.MULTILINE)
_ALIAS_RE = re.compile(r"\bas\s+([A-Za-z_]\w*)")
_TERMINALS: dict[int, tuple[Collection[str], frozenset[str]]] = {}


def _terminals_of(names: Collection[str]) -> frozenset[str]:
    """Last components of qualified names ("os.path.join" → "join"), cached per name table."""
    cached = _TERMINALS.get(id(names))
    if cached is not None and cached[0] is names:
        return cached[1]
    terminals = frozenset(n.rpartition(".")[2] for n in names)
    _TERMINALS[id(names)] = (names, terminals)
    return terminals


def terminal_name(node: cst.CSTNode) -> str | None:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    return None


class SourceRule(cst.BatchableCSTVisitor):
    """Base for source rules: names resolved through QualifiedNameProvider, scope, reporting.

    Metadata (QualifiedNameProvider, ScopeProvider, PositionProvider) is declared per file
    in `FileContext` and resolved on first use instead of in METADATA_DEPENDENCIES, so
    files in which no rule has a candidate node never pay for scope analysis.
    """

    RULE: ClassVar[Rule]

    def __init__(self, path: Path, context: FileContext) -> None:
        super().__init__()
        self.path = path
        self.context = context
        self.findings: list[Finding] = []
        self.function_depth = 0   # >0 inside a def or lambda: code that runs when called

    # -- names ---------------------------------------------------------------------------------
    def qualified_names(self, node: cst.CSTNode) -> set[str]:
        return self.context.qualified_names(node)

    def matched_name(self, node: cst.CSTNode, names: Collection[str]) -> str | None:
        """The first qualified name of `node` found in `names` (alias-resolved), or None."""
        terminal = terminal_name(node)
        if terminal is None or (terminal not in _terminals_of(names) and terminal not in self.context.aliases):
            return None
        for name in sorted(self.qualified_names(node)):
            if name in names:
                return name
        return None

    def mentions(self, node: cst.CSTNode, names: Collection[str]) -> str | None:
        """A Name/Attribute anywhere inside `node` that resolves to one of `names`, or None."""
        for sub in _names_and_attributes(node):
            found = self.matched_name(sub, names)
            if found:
                return found
        return None

    # -- where ---------------------------------------------------------------------------------
    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.function_depth += 1

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.function_depth -= 1

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self.function_depth += 1

    def leave_Lambda(self, original_node: cst.Lambda) -> None:
        self.function_depth -= 1

    def runs_at_import(self, node: cst.CSTNode | None = None) -> bool:
        """True while visiting code that executes when the module is imported (module or class body)."""
        return self.function_depth == 0

    def scope_of(self, node: cst.CSTNode):
        return self.context.scope(node)

    def line_of(self, node: cst.CSTNode) -> tuple[int, int]:
        return self.context.position(node)

    # -- output --------------------------------------------------------------------------------
    def report(
        self,
        node: cst.CSTNode,
        message: str,
        *,
        fix: str | None = None,
        severity: Severity | None = None,
        verdicts: dict[Backend, Verdict] | None = None,
        data: dict[str, str] | None = None,
    ) -> None:
        line, column = self.line_of(node)
        self.findings.append(self.RULE.finding(self.path, message, line=line, column=column,
                                               fix=fix, severity=severity, verdicts=verdicts, data=data))


def _names_and_attributes(node: cst.CSTNode) -> Iterable[cst.CSTNode]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (cst.Name, cst.Attribute)):
            yield current
        stack.extend(current.children)


def call_argument(call: cst.Call, position: int, keyword: str) -> cst.BaseExpression | None:
    """The expression passed as positional `position` or as `keyword=`, whichever is there."""
    positional = [a for a in call.args if a.keyword is None and not a.star]
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword:
            return arg.value
    if position < len(positional):
        return positional[position].value
    return None


def is_literal_string(node: cst.BaseExpression | None) -> bool:
    return isinstance(node, (cst.SimpleString, cst.ConcatenatedString)) or (
        isinstance(node, cst.FormattedString) and not any(isinstance(p, cst.FormattedStringExpression) for p in node.parts)
    )


def literal_string(node: cst.BaseExpression | None) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


# -- rule discovery --------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedSourceRule:
    code: str
    visitor: type[SourceRule]
    trigger: re.Pattern[str]


def source_rules(config: Config | None = None) -> list[LoadedSourceRule]:
    """The enabled source rules, each with its visitor class and text trigger."""
    loaded = []
    for registered in rules_for("source"):
        if config is not None and not config.enabled(registered.rule.code):
            continue
        module = registered.module
        loaded.append(LoadedSourceRule(registered.rule.code, module.VISITOR, re.compile(module.TRIGGER, re.MULTILINE)))
    return loaded


def registered_source_rules() -> list[RegisteredRule]:
    return list(rules_for("source"))


# -- one file --------------------------------------------------------------------------------

def decode_source(data: bytes) -> str:
    """Decode like CPython does (PEP 263 cookie, BOM); raises UnicodeDecodeError/SyntaxError/LookupError."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    if encoding == "utf-8-sig" or data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
        encoding = "utf-8"
    return data.decode(encoding)


def _syntax_error_finding(path: Path, exc: SyntaxError, config: Config) -> list[Finding]:
    # The IK9xx rule comes from the registry like every rule: the engine never imports a rule module.
    syntax_error = rule_named("inputs", "python-syntax-error")
    return [syntax_error.module.finding_for(path, exc)] if config.enabled(syntax_error.rule.code) else []


def scan_source_text(path: Path, text: str, config: Config, *, rules: list[LoadedSourceRule] | None = None,
                     module: str | None = None) -> FileResult:
    """Run the enabled rules over one already-decoded file; never raises for bad source."""
    rules = source_rules(config) if rules is None else rules
    result = FileResult(Path(path), FileKind.PYTHON, module=module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences etc. are not ours to report
        try:
            compile(text, str(path), "exec", ast.PyCF_ONLY_AST | ast.PyCF_TYPE_COMMENTS, dont_inherit=True)
        except SyntaxError as exc:
            result.findings = _syntax_error_finding(Path(path), exc, config)
            result.compute_verdicts()
            return result
        except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
            return FileResult(Path(path), FileKind.ERROR, module=module,
                              error=f"cannot parse {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    wanted = [r for r in rules if r.trigger.search(text)]
    if wanted:
        try:
            tree = cst.parse_module(text)
        except (cst.ParserSyntaxError, RecursionError) as exc:
            # CPython accepted it, LibCST's grammar did not: a gap in our tool, not the user's code.
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return FileResult(Path(path), FileKind.ERROR, module=module,
                              error=f"cannot parse {path} with LibCST ({reason})")
        wrapper = MetadataWrapper(tree, unsafe_skip_copy=True)
        context = FileContext(wrapper, text)
        visitors = [r.visitor(Path(path), context) for r in wanted]
        try:
            wrapper.visit_batched(visitors)
        except RecursionError:
            return FileResult(Path(path), FileKind.ERROR, module=module,
                              error=f"cannot analyze {path} (nesting too deep for LibCST)")
        lines = text.splitlines()
        findings = [f for v in visitors for f in v.findings]
        findings = [f for f in findings if not is_suppressed(f, lines)]
        result.findings = sorted(findings, key=lambda f: (f.line or 0, f.column or 0, f.code))
    result.compute_verdicts()
    return result


def scan_source_bytes(path: Path, data: bytes, config: Config, *, rules: list[LoadedSourceRule] | None = None,
                      module: str | None = None) -> FileResult:
    try:
        text = decode_source(data)
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return FileResult(Path(path), FileKind.ERROR, module=module, error=f"cannot decode {path} ({reason})")
    return scan_source_text(path, text, config, rules=rules, module=module)


def scan_source_file(path: Path, config: Config, *, rules: list[LoadedSourceRule] | None = None,
                     module: str | None = None) -> FileResult:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileResult(Path(path), FileKind.ERROR, module=module,
                          error=f"cannot read {path} ({exc.strerror or type(exc).__name__})")
    return scan_source_bytes(path, data, config, rules=rules, module=module)


# -- many files: cache and a small process pool ----------------------------------------------

def _cache_dir() -> Path | None:
    if os.environ.get("INTERPKIT_NO_CACHE"):
        return None
    root = os.environ.get("INTERPKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "interpkit")
    return Path(root) / "source-v1"


def _rules_fingerprint(rules: list[LoadedSourceRule]) -> str:
    """Changes when the enabled set or any rule/walker source changes, so stale results never show."""
    digest = hashlib.sha1()
    files = [Path(__file__)] + [Path(__import__(r.visitor.__module__, fromlist=["_"]).__file__) for r in rules]
    for file in files:
        st = file.stat()
        digest.update(f"{file}:{st.st_size}:{st.st_mtime_ns};".encode())
    digest.update(",".join(r.code for r in rules).encode())
    return digest.hexdigest()[:16]


def _cache_key(path: Path, fingerprint: str) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{fingerprint}".encode()).hexdigest()


def _result_to_cache(fr: FileResult) -> dict:
    return {
        "kind": fr.kind.value, "error": fr.error,
        "findings": [
            {"code": f.code, "severity": int(f.severity), "message": f.message, "line": f.line,
             "column": f.column, "backends": sorted(b.value for b in f.backends), "fix": f.fix,
             "verdicts": [[b.value, v.value] for b, v in f.verdicts], "data": [list(pair) for pair in f.data]}
            for f in fr.findings
        ],
    }


def _result_from_cache(path: Path, data: dict, module: str | None) -> FileResult:
    findings = [
        Finding(code=d["code"], severity=Severity(d["severity"]), message=d["message"], path=path,
                line=d["line"], column=d["column"], backends=frozenset(Backend(b) for b in d["backends"]),
                fix=d["fix"], verdicts=tuple((Backend(b), Verdict(v)) for b, v in d["verdicts"]),
                data=tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in d.get("data", ())))
        for d in data["findings"]
    ]
    fr = FileResult(path, FileKind(data["kind"]), module=module, error=data["error"], findings=findings)
    fr.compute_verdicts()
    return fr


def _scan_worker(args: tuple[str, Config]) -> FileResult:
    path, config = args
    return scan_source_file(Path(path), config)


POOL_THRESHOLD = 24   # below this, starting worker processes costs more than it saves


def analyze_source_files(paths: list[Path], config: Config, *, modules: dict[Path, str] | None = None,
                         jobs: int | None = None, cache: bool = True) -> list[FileResult]:
    """Scan Python files (kind=python); a syntax error is one IK901 finding, an undecodable file kind=error.

    Results come back in the order of `paths`. `jobs` defaults to 2 worker processes on
    machines with 4+ cores when there are enough files to pay for them.
    """
    config = config or Config()
    modules = modules or {}
    rules = source_rules(config)
    cache_root = _cache_dir() if cache else None
    fingerprint = _rules_fingerprint(rules) if cache_root else ""
    results: dict[int, FileResult] = {}
    todo: list[tuple[int, Path, str | None]] = []
    for index, path in enumerate(paths):
        path = Path(path)
        key = _cache_key(path, fingerprint) if cache_root else None
        if key:
            entry = cache_root / key[:2] / f"{key}.json"
            try:
                results[index] = _result_from_cache(path, json.loads(entry.read_text()), modules.get(path))
                continue
            except (OSError, ValueError, KeyError):
                pass
        todo.append((index, path, key))

    # two workers only pay off with two otherwise idle cores (measured in bench/scan_speed.py)
    jobs = min(2, (os.cpu_count() or 1) // 2) if jobs is None else jobs
    if jobs > 1 and len(todo) >= POOL_THRESHOLD:
        import concurrent.futures
        import multiprocessing

        # spawn, not fork: the parent may hold threads (rich progress) or torch.
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            fresh = list(pool.map(_scan_worker, [(str(p), config) for _, p, _ in todo], chunksize=8))
    else:
        fresh = [scan_source_file(p, config, rules=rules) for _, p, _ in todo]

    for (index, path, key), fr in zip(todo, fresh):
        fr.path = path
        fr.module = modules.get(path)
        results[index] = fr
        if key and cache_root:
            entry = cache_root / key[:2] / f"{key}.json"
            try:
                entry.parent.mkdir(parents=True, exist_ok=True)
                tmp = entry.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(_result_to_cache(fr)))
                os.replace(tmp, entry)
            except OSError:
                pass  # a read-only cache only costs speed
    return [results[i] for i in range(len(paths))]


def run_rule(visitor: type[SourceRule], text: str, path: Path = Path("<sample>.py")) -> list[Finding]:
    """Run one rule over source text (what each rule module's `check` does; samples use it)."""
    wrapper = MetadataWrapper(cst.parse_module(text), unsafe_skip_copy=True)
    visitor_instance = visitor(Path(path), FileContext(wrapper, text))
    wrapper.visit_batched([visitor_instance])
    lines = text.splitlines()
    kept = [f for f in visitor_instance.findings if not is_suppressed(f, lines)]
    return sorted(kept, key=lambda f: (f.line or 0, f.column or 0))


def marked_lines(text: str, marker: str = "# bad") -> list[int]:
    """Lines of a sample or fixture that carry the `# bad` marker: where findings are expected."""
    return [n for n, line in enumerate(text.splitlines(), 1) if re.search(re.escape(marker) + r"\b", line)]
