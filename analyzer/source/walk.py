"""The source rules over one Python file: CPython's ast first, LibCST where only LibCST can tell.

Rules subclass `SourceRule` (a read-only `BatchableCSTVisitor`), name the nodes they care about
with `visit_*` methods, resolve spellings with `QualifiedNameProvider` (so `from ctypes import
CDLL as L` and `import os as o` match like the literal names) and report through `self.report`.
Each rule module also has an `AST_VISITOR` (ast_pass.AstRule) asking the same questions of
CPython's tree, with LibCST's names computed by exact_names.py.

Cost model (measured on a site-packages of 57 distributions, see bench/scan_speed.py site): a
LibCST parse costs ~7x CPython's, and its scope/qualified-name metadata ~8x the parse again. So
each file is parsed once by CPython (the syntax error, IK901; the import statements, for the
import graph; the file's NameTable, see names.py); rules whose trigger text occurs and whose
names (`NAMES` in the rule module) or `could_report` say a finding is possible run as ast
visitors; a file where some name is Undecidable there goes through the LibCST visitors, as
every file does with fast=False (the reference the tests compare against). Inside LibCST, scope
analysis runs only when the NameTable cannot rule a node out. Many files at once, the cache and
the worker processes: batch.py.
"""
from __future__ import annotations

import ast
import codecs
import io
import re
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Collection, Iterable

import libcst as cst
from libcst._metadata_dependent import LazyValue
from libcst.helpers import get_full_name_for_node
from libcst.metadata import (
    MetadataWrapper,
    PositionProvider,
    QualifiedNameProvider,
    ScopeProvider,
)

from interpkit.analyzer.config import Config, is_suppressed
from interpkit.core.findings import Backend, FileKind, FileResult, Finding, Severity, Verdict
from interpkit.analyzer.registry import RegisteredRule, Rule, rule_named, rules_for
from interpkit.analyzer.source.names import NameTable, terminals_of


class FileContext:
    """Per-file state shared by all rule visitors of one pass: the metadata wrapper and alias names.

    Metadata is resolved lazily and at most once per file: scope analysis and qualified names
    cost ~8x the parse. They are computed only when some node could match what a rule looks
    for: its last name component is the rule's (or a local `as` alias), and the file's name
    table (`names.NameTable`, a superset of what LibCST can resolve) has a candidate in the
    rule's set. `table=None` (the full analysis) asks LibCST for every node that passes the
    first test, as the scan did before the table existed.
    """

    def __init__(self, wrapper: MetadataWrapper, text: str, table: NameTable | None = None) -> None:
        self.wrapper = wrapper
        self.aliases = frozenset(alias for statement in _IMPORT_RE.findall(text)
                                 for alias in _ALIAS_RE.findall(statement))
        self.table = table

    def _value(self, provider, node: cst.CSTNode, default):
        value = self.wrapper.resolve(provider).get(node, default)
        # providers may store LazyValue thunks; MetadataDependent.get_metadata unwraps them the same way
        return value() if isinstance(value, LazyValue) else value

    def qualified_names(self, node: cst.CSTNode) -> set[str]:
        return {q.name for q in self._value(QualifiedNameProvider, node, ())}

    def could_match(self, node: cst.CSTNode, names: Collection[str]) -> bool:
        """False when no qualified name of node can be in names (certain); True: ask LibCST."""
        if self.table is None:
            return True
        spelling = get_full_name_for_node(node)
        return spelling is None or self.table.could_match(spelling, names)

    def scope(self, node: cst.CSTNode):
        return self._value(ScopeProvider, node, None)

    def position(self, node: cst.CSTNode) -> tuple[int, int]:
        start = self.wrapper.resolve(PositionProvider)[node].start
        return start.line, start.column + 1


# `import a.b as x` / `from a import (b as y, ...)`: only import aliases rename what rules look for
_IMPORT_RE = re.compile(r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+(\([^)]*\)|[^\n]*)", re.MULTILINE)
_ALIAS_RE = re.compile(r"\bas\s+([A-Za-z_]\w*)")
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

    def matched_name(self, node: cst.CSTNode, names: Collection[str], *, top: bool = True) -> str | None:
        """The first qualified name of `node` found in `names` (alias-resolved), or None.
        (`top`, whether an attribute chain encloses the node, only the ast pass needs to be told.)"""
        terminal = terminal_name(node)
        if terminal is None or (terminal not in terminals_of(names) and terminal not in self.context.aliases):
            return None
        if not self.context.could_match(node, names):
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

    # -- the tree's shapes, named the same on ast_pass.AstRule (rule logic written once) ----------
    @staticmethod
    def argument(call: cst.Call, position: int, keyword: str) -> cst.BaseExpression | None:
        return call_argument(call, position, keyword)

    @staticmethod
    def string_value(node: cst.BaseExpression | None) -> str | None:
        return literal_string(node)

    @staticmethod
    def is_string(node: cst.BaseExpression | None) -> bool:
        return is_literal_string(node)

    @staticmethod
    def attribute_of(node: cst.CSTNode | None) -> str | None:
        return node.attr.value if isinstance(node, cst.Attribute) else None

    @staticmethod
    def identifier_of(node: cst.CSTNode | None) -> str | None:
        return node.value if isinstance(node, cst.Name) else None

    @staticmethod
    def is_call(node: cst.CSTNode | None) -> bool:
        return isinstance(node, cst.Call)

    @staticmethod
    def is_true(node: cst.CSTNode | None) -> bool:
        return isinstance(node, cst.Name) and node.value == "True"

    @staticmethod
    def assign_targets(node: cst.Assign) -> list[cst.BaseExpression]:
        return [target.target for target in node.targets]

    @staticmethod
    def integer_values(node: cst.CSTNode) -> Iterable[int]:
        """Every integer literal inside node, as written (`0x100`, `1_000`)."""
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, cst.Integer):
                try:
                    yield int(current.value.replace("_", ""), 0)
                except ValueError:
                    pass
            stack.extend(current.children)

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
    # The rule module's NAMES / NAME_PREFIXES: it reports only where a node's qualified name is
    # one of these (or starts with a prefix). None: no such promise (only the trigger applies).
    names: frozenset[str] | None = None
    name_prefixes: tuple[str, ...] = ()
    # The module's could_report(ast tree, text, NameTable) -> bool: False promises no finding.
    could_report: Callable | None = None
    # The module's AST_VISITOR (ast_pass.AstRule): the same findings from CPython's ast.
    ast_visitor: type | None = None
    # Substrings one of which every trigger match contains (None: none found): `in` finds a
    # substring many times faster than re tries an alternation at every position.
    literals: tuple[str, ...] | None = None
    # No match of the trigger can hold a line break (within_one_line): with literals, only the
    # lines around a literal's occurrences need the regex, not the whole file.
    one_line: bool = False

    def triggered(self, text: str) -> bool:
        if self.literals is None:
            return self.trigger.search(text) is not None
        if self.one_line:
            return self._search_literal_lines(text)
        if not any(literal in text for literal in self.literals):
            return False
        return self.trigger.search(text) is not None

    def _search_literal_lines(self, text: str) -> bool:
        """trigger.search(text) for a one-line trigger: every match holds a literal, so it lies
        on a line holding one; pos/endpos keep `^`, `$` (MULTILINE), `\\b` and lookarounds
        as they are in the whole text (within_one_line admits no other anchor)."""
        search, find, rfind = self.trigger.search, text.find, text.rfind
        for literal in self.literals:
            at = find(literal)
            while at >= 0:
                end = find("\n", at)
                if end < 0:
                    end = len(text)
                if search(text, rfind("\n", 0, at) + 1, end) is not None:
                    return True
                at = find(literal, end)
        return False


def required_literals(pattern: str) -> tuple[str, ...] | None:
    """For each top-level alternative of `pattern`, its longest run of literal characters (at
    least 3), or None when some alternative has none or the pattern ignores case."""
    try:
        from re import _constants as sre, _parser as sre_parse   # the parser `re` itself uses (3.11+)
    except ImportError:
        return None
    parsed = sre_parse.parse(pattern)
    if parsed.state.flags & re.IGNORECASE:
        return None
    items = list(parsed)
    branches = items[0][1][1] if len(items) == 1 and items[0][0] is sre.BRANCH else [items]
    literals = []
    for branch in branches:
        best = run = ""
        for op, argument in branch:
            if op is sre.LITERAL:
                run += chr(argument)
                best = max(best, run, key=len)
            elif op is not sre.AT:   # \b and anchors match no character: the run goes on
                run = ""
        if len(best) < 3:
            return None
        literals.append(best)
    return tuple(literals)


def within_one_line(pattern: str) -> bool:
    """True when no match of `pattern` (compiled with re.MULTILINE, as triggers are) can hold a
    line break and its anchors mean the same on a line searched with pos/endpos as in the whole
    text. Conservative: any construct not known to exclude a line break answers False."""
    try:
        from re import _constants as sre, _parser as sre_parse   # the parser `re` itself uses (3.11+)
    except ImportError:
        return False
    parsed = sre_parse.parse(pattern, re.MULTILINE)
    if parsed.state.flags & (re.IGNORECASE | re.DOTALL | re.VERBOSE):
        return False
    newline = ord("\n")
    # `^` and `$` (the parser's AT_BEGINNING/AT_END; MULTILINE turns them into the line forms
    # when compiled), \A (pos keeps the real start: it never matches past it) and \b/\B (they
    # look before pos at the real text, and past endpos only where a line break ends the line)
    anchors = {sre.AT_BEGINNING_LINE, sre.AT_END_LINE, sre.AT_BEGINNING, sre.AT_END, sre.AT_BEGINNING_STRING,
               sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY}
    categories = {sre.CATEGORY_DIGIT, sre.CATEGORY_WORD, sre.CATEGORY_NOT_SPACE, sre.CATEGORY_NOT_LINEBREAK}

    def in_set(items) -> bool:
        for op, argument in items:
            if op is sre.LITERAL and argument != newline:
                continue
            if op is sre.RANGE and not argument[0] <= newline <= argument[1]:
                continue
            if op is sre.CATEGORY and argument in categories:
                continue
            return False   # NEGATE, the line break itself, or a class that holds it
        return True

    def ok(items) -> bool:
        for op, argument in items:
            if op is sre.LITERAL:
                if argument == newline:
                    return False
            elif op is sre.NOT_LITERAL:
                if argument != newline:
                    return False
            elif op is sre.ANY:
                continue   # without DOTALL (refused above) `.` is everything but a line break
            elif op is sre.IN:
                if not in_set(argument):
                    return False
            elif op is sre.AT:
                if argument not in anchors:
                    return False
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) or op is getattr(sre, "POSSESSIVE_REPEAT", None):
                if not ok(argument[2]):
                    return False
            elif op is sre.SUBPATTERN:
                if argument[1] or not ok(argument[3]):   # local flags: refused, like global ones
                    return False
            elif op is sre.BRANCH:
                if not all(ok(branch) for branch in argument[1]):
                    return False
            elif op in (sre.ASSERT, sre.ASSERT_NOT):
                if not ok(argument[1]):
                    return False
            else:
                return False   # group references, conditionals, atomic groups: not proven
        return True

    return ok(list(parsed))


def source_rules(config: Config | None = None) -> list[LoadedSourceRule]:
    """The enabled source rules, each with its visitor class and text trigger."""
    loaded = []
    for registered in rules_for("source"):
        if config is not None and not config.enabled(registered.rule.code):
            continue
        module = registered.module
        names = getattr(module, "NAMES", None)
        loaded.append(LoadedSourceRule(registered.rule.code, module.VISITOR, re.compile(module.TRIGGER, re.MULTILINE),
                                       frozenset(names) if names is not None else None,
                                       tuple(getattr(module, "NAME_PREFIXES", ())),
                                       getattr(module, "could_report", None),
                                       getattr(module, "AST_VISITOR", None), required_literals(module.TRIGGER),
                                       within_one_line(module.TRIGGER)))
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


_WORD_RE = re.compile(r"[^\W\d]\w*")
# For ASCII text the same words as _WORD_RE.findall, from one bytes.translate (every byte that
# is not [A-Za-z0-9_] becomes a space) and split: ~1.6x faster over the bench tree.
_NOT_WORD_BYTES = bytes(c if chr(c).isascii() and (chr(c).isalnum() or c == ord("_")) else 0x20 for c in range(256))


def identifier_words(text: str) -> set[str]:
    """set(_WORD_RE.findall(text)): every run of word characters, less its leading digits."""
    if not text.isascii():
        return set(_WORD_RE.findall(text))
    words = set()
    for run in set(text.encode("ascii").translate(_NOT_WORD_BYTES).split()):
        word = run.lstrip(b"0123456789")
        if word:
            words.add(word.decode("ascii"))
    return words


@dataclass
class SourceOutcome:
    """One file's rule results, and its import statements when the caller asked for them."""

    result: FileResult
    imports: list | None = None   # interpkit.analyzer.source.imports.ImportRef, in source order
    used_libcst: bool = False


def scan_source_text(path: Path, text: str, config: Config, *, rules: list[LoadedSourceRule] | None = None,
                     module: str | None = None, fast: bool = True) -> FileResult:
    """Run the enabled rules over one already-decoded file; never raises for bad source."""
    return analyze_text(Path(path), text, config, rules=rules, module=module, fast=fast).result


def analyze_text(path: Path, text: str, config: Config, *, rules: list[LoadedSourceRule] | None = None,
                 module: str | None = None, fast: bool = True,
                 import_module: tuple[str, bool] | None = None) -> SourceOutcome:
    """The rules over one decoded file, from one CPython parse that also gives the syntax error
    (IK901) and, with `import_module=(dotted name, is_package)`, the file's import statements.

    fast=False is the full analysis: every rule whose trigger matches runs through LibCST and
    every candidate node gets LibCST's qualified names. fast=True first asks the file's
    NameTable whether a rule's names can occur at all (see names.py); results are the same.
    """
    rules = source_rules(config) if rules is None else rules
    result = FileResult(path, FileKind.PYTHON, module=module)
    outcome = SourceOutcome(result)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences etc. are not ours to report
        try:
            tree = compile(text, str(path), "exec", ast.PyCF_ONLY_AST | ast.PyCF_TYPE_COMMENTS, dont_inherit=True)
        except SyntaxError as exc:
            result.findings = _syntax_error_finding(path, exc, config)
            result.compute_verdicts()
            if import_module is not None:
                outcome.imports = _imports_without_type_comments(path, text, import_module)
            return outcome
        except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
            outcome.result = FileResult(path, FileKind.ERROR, module=module,
                                        error=f"cannot parse {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
            outcome.imports = [] if import_module is not None else None
            return outcome
    if import_module is not None:
        from interpkit.analyzer.source.imports import imports_from_tree

        outcome.imports = imports_from_tree(tree, *import_module, source=text)
    wanted = [r for r in rules if r.triggered(text)]
    table = None
    if wanted and fast:
        table = NameTable.from_tree(tree, identifier_words(text))
        wanted = [r for r in wanted if (r.names is None or table.mentions(r.names, r.name_prefixes))
                  and (r.could_report is None or r.could_report(tree, text, table))]
    if wanted and fast and all(r.ast_visitor is not None for r in wanted):
        findings = _ast_findings(path, tree, text, table, [r.ast_visitor for r in wanted])
        if findings is not None:
            lines = text.splitlines()
            result.findings = sorted((f for f in findings if not is_suppressed(f, lines)),
                                     key=lambda f: (f.line or 0, f.column or 0, f.code))
            result.compute_verdicts()
            return outcome
    del tree
    if wanted:
        outcome.used_libcst = True
        try:
            cst_tree = cst.parse_module(text)
        except (cst.ParserSyntaxError, RecursionError) as exc:
            # CPython accepted it, LibCST's grammar did not: a gap in our tool, not the user's code.
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            outcome.result = FileResult(path, FileKind.ERROR, module=module,
                                        error=f"cannot parse {path} with LibCST ({reason})")
            return outcome
        wrapper = MetadataWrapper(cst_tree, unsafe_skip_copy=True)
        context = FileContext(wrapper, text, table)
        visitors = [r.visitor(path, context) for r in wanted]
        try:
            wrapper.visit_batched(visitors)
        except RecursionError:
            outcome.result = FileResult(path, FileKind.ERROR, module=module,
                                        error=f"cannot analyze {path} (nesting too deep for LibCST)")
            return outcome
        lines = text.splitlines()
        findings = [f for v in visitors for f in v.findings]
        findings = [f for f in findings if not is_suppressed(f, lines)]
        result.findings = sorted(findings, key=lambda f: (f.line or 0, f.column or 0, f.code))
    result.compute_verdicts()
    return outcome


def _ast_findings(path: Path, tree: ast.Module, text: str, table: NameTable, visitors: list) -> list[Finding] | None:
    """The rules' ast visitors over the parsed file (ast_pass), or None where only LibCST can
    tell (a name only scope analysis resolves, nesting too deep for the walk)."""
    from interpkit.analyzer.source.ast_pass import Undecidable, run_ast_rules

    aliases = frozenset(alias for statement in _IMPORT_RE.findall(text) for alias in _ALIAS_RE.findall(statement))
    try:
        return run_ast_rules(path, tree, text, table, aliases, visitors)
    except (Undecidable, RecursionError):
        return None
    except Exception:   # a gap in the fast path must cost speed, never the file: LibCST decides
        return None


def _imports_without_type_comments(path: Path, text: str, import_module: tuple[str, bool]) -> list:
    """The import graph reads files without type comments: a misplaced `# type:` comment is a
    syntax error only for the rule pass."""
    from interpkit.analyzer.source.imports import imports_from_tree

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, filename=str(path))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return imports_from_tree(tree, *import_module, source=text)


def scan_source_bytes(path: Path, data: bytes, config: Config, *, rules: list[LoadedSourceRule] | None = None,
                      module: str | None = None, fast: bool = True) -> FileResult:
    return analyze_bytes(Path(path), data, config, rules=rules, module=module, fast=fast).result


def analyze_bytes(path: Path, data: bytes, config: Config, *, rules: list[LoadedSourceRule] | None = None,
                  module: str | None = None, fast: bool = True,
                  import_module: tuple[str, bool] | None = None) -> SourceOutcome:
    try:
        text = decode_source(data)
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return SourceOutcome(FileResult(path, FileKind.ERROR, module=module, error=f"cannot decode {path} ({reason})"),
                             [] if import_module is not None else None)
    return analyze_text(path, text, config, rules=rules, module=module, fast=fast, import_module=import_module)


def analyze_file(path: Path, config: Config, *, rules: list[LoadedSourceRule] | None = None,
                 module: str | None = None, fast: bool = True,
                 import_module: tuple[str, bool] | None = None) -> SourceOutcome:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return SourceOutcome(FileResult(path, FileKind.ERROR, module=module,
                                        error=f"cannot read {path} ({exc.strerror or type(exc).__name__})"),
                             [] if import_module is not None else None)
    return analyze_bytes(path, data, config, rules=rules, module=module, fast=fast, import_module=import_module)


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
