"""The ast pass (analyzer/source/ast_pass.py) and its names (exact_names.py) against LibCST.

Every qualified name ExactNames decides must be the one LibCST's QualifiedNameProvider gives
the same node, on the rules' samples, on cases written to break it, and over a real installed
tree; every finding must be the LibCST visitor's, position included (test_names_equivalence.py
compares whole results; here the parts that differ between the two trees are pinned down:
character columns, decorators, string literals, dotted imports, scopes)."""
from __future__ import annotations

import ast
import importlib.util
import re
from collections import defaultdict
from pathlib import Path

import libcst as cst
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libcst.metadata import MetadataWrapper, PositionProvider, QualifiedNameProvider

from interpkit.analyzer.config import Config
from interpkit.analyzer.registry import rules_for
from interpkit.analyzer.source.ast_pass import AstRule, FileFacts, Undecidable, _Walk
from interpkit.analyzer.source.batch import result_to_json
from interpkit.analyzer.source.names import NameTable
from interpkit.analyzer.source.walk import _ALIAS_RE, _IMPORT_RE, _WORD_RE, analyze_text, source_rules

RULES = source_rules(Config())

# Spellings where CPython's ast and LibCST's tree differ, or where LibCST's resolution has quirks.
CASES = [
    "import os.path\nos.getcwd()\nos.path.join(__file__)\nimport os\nos.fork()\n",
    "import numpy.linalg._umath_linalg\nx = numpy.linalg._umath_linalg._ilp64\nnumpy.linalg.norm(1)\n",
    "subprocess.run(['x'])\nimport subprocess\nsubprocess.run(['y'])\nrun()\nfrom subprocess import run\nrun()\n",
    "def f():\n    run()\n    from subprocess import run\n    run()\n",
    "import subprocess as sp\nclass A:\n    import os\n    os.fork()\n    def m(self):\n        sp.run(['x'])\n",
    "import os\nx = [os.fork() for os in range(3)]\n",
    "import os\n@ os.fork\ndef f(a=os.fork()): pass\n",
    "s = 'é'; import os; os.fork()  # non-ASCII before the call\n",
    "import multiprocessing as mp\nmp.get_context('fo' 'rk')\nmp.get_context('fork')\nmp.get_context(f'fork')\n",
    "import importlib\nimportlib.import_module('a' f'{b}')\nimportlib.import_module(f'x')\n",
    "import os\nif __name__ == '__main__':\n    open(os.path.dirname(__file__))\nif __name__ == b'__main__':\n    open(__file__)\n",
    "REG = {}\ndef f():\n    global REG\n    REG = {}\n    REG['a'] = 1\ndef g(REG):\n    REG['b'] = 2\n",
    "import threading\nt = threading.Thread(target=print, daemon=True)\nt.start()\nthreading.Timer(1, print).start()\n",
    "import ctypes\nctypes.CDLL('x', mode=ctypes.RTLD_GLOBAL | 2)\nctypes.CDLL('y', True)\n",
    "from . import subprocess\nfrom .. import os\nos.fork()\nsubprocess.run()\n",
    "import os\ndef f(os):\n    os.fork()\nos.fork()\nlambda os: os.fork()\n[os.fork() for os in ()]\n",
    "import os\ndef g():\n    global os\n    os = None\nos.fork()\n",
    "import os\nclass C:\n    os = None\n    os.fork()\n    def m(self):\n        os.fork()\n",
    "import os\nos.environ['A'] = '1'\ndel os.environ['A'], x\ndel (os.environ['B'], y)\nos.environ.update(A=1)\n",
]


class _Recorder(AstRule):
    """Asks ExactNames about every Name (load) and Attribute node, as a rule would."""

    def __init__(self, facts, walk) -> None:
        super().__init__(facts, walk)
        self.inside: set[int] = set()
        self.answers: list[tuple[ast.AST, set[str] | None]] = []

    def visit_Attribute(self, node) -> None:
        self.inside.add(id(node.value))
        self._ask(node)

    def visit_Name(self, node) -> None:
        if isinstance(node.ctx, ast.Load):
            self._ask(node)

    def _ask(self, node) -> None:
        try:
            from interpkit.analyzer.source.ast_pass import _pure_chain
            from interpkit.analyzer.source.names import full_name

            answer = self.facts.exact.qualified_names(
                full_name(node), is_name=isinstance(node, ast.Name), top=id(node) not in self.inside,
                pure=_pure_chain(node), where=self._walk.where(node))
        except Undecidable:
            answer = None
        self.answers.append((node, answer))


def _compare_names(text: str) -> tuple[int, int, list]:
    """(decided, undecided, differences) of ExactNames against LibCST over one text."""
    tree = ast.parse(text)
    table = NameTable.from_tree(tree, set(_WORD_RE.findall(text)))
    aliases = frozenset(a for s in _IMPORT_RE.findall(text) for a in _ALIAS_RE.findall(s))
    lines = text.splitlines()
    walk = _Walk()
    recorder = _Recorder(FileFacts(Path("x.py"), tree, lines, table, aliases), walk)
    walk.bind([recorder])
    walk.visit(tree)
    wrapper = MetadataWrapper(cst.parse_module(text), unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    names = wrapper.resolve(QualifiedNameProvider)
    by_span = defaultdict(list)
    for node, where in positions.items():
        if isinstance(node, (cst.Name, cst.Attribute)):
            by_span[(type(node).__name__, where.start.line, where.start.column, where.end.line, where.end.column)].append(node)

    def char_column(line: int, offset: int) -> int:
        return len(lines[line - 1].encode()[:offset].decode(errors="replace"))

    decided = undecided = 0
    differences = []
    for node, ours in answers(recorder):
        span = (type(node).__name__, node.lineno, char_column(node.lineno, node.col_offset), node.end_lineno,
                char_column(node.end_lineno, node.end_col_offset))
        matches = by_span.get(span, [])
        if len(matches) != 1:
            continue
        if ours is None:
            undecided += 1
            continue
        value = names.get(matches[0], set())
        theirs = {q.name for q in (value() if callable(value) else value)}
        decided += 1
        if ours != theirs:
            differences.append((span, ours, theirs))
    return decided, undecided, differences


def answers(recorder: _Recorder):
    return recorder.answers


SAMPLES = [s for r in rules_for("source") for s in (*r.module.VALID, *r.module.INVALID)]


@pytest.mark.parametrize("text", SAMPLES + CASES)
def test_exact_names_equal_libcst_on_samples_and_cases(text):
    assert _compare_names(text)[2] == []


def _real_files(limit: int) -> list[Path]:
    roots = [Path(importlib.util.find_spec(name).origin).parent for name in ("libcst", "hypothesis")
             if importlib.util.find_spec(name) is not None]
    files = sorted(f for root in roots for f in root.rglob("*.py"))
    return files[:: max(1, len(files) // limit)][:limit]


@pytest.mark.slow
def test_exact_names_equal_libcst_over_a_real_tree():
    """Every name decided over ~80 real files (libcst's and hypothesis' sources) is LibCST's,
    and most import-rooted names are decided at all."""
    files = _real_files(80)
    assert len(files) >= 40
    decided = undecided = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        d, u, differences = _compare_names(text)
        assert differences == [], path
        decided += d
        undecided += u
    assert decided > 5 * 1000 and decided > undecided


@pytest.mark.parametrize("text", CASES)
def test_cases_give_the_libcst_visitors_findings(text):
    fast = analyze_text(Path("case.py"), text, Config(), rules=RULES, fast=True).result
    full = analyze_text(Path("case.py"), text, Config(), rules=RULES, fast=False).result
    assert result_to_json(fast)["findings"] == result_to_json(full)["findings"]


def test_column_counts_characters_like_libcst():
    text = "x = 'ééé'; import os; os.fork()\n"
    finding, = analyze_text(Path("c.py"), text, Config(), rules=RULES).result.findings
    assert finding.code == "IK403" and finding.column == text.index("os.fork") + 1


def test_undecidable_file_goes_to_libcst_with_the_same_findings():
    text = "import os\nos = os\nos.fork()\n"   # rebinding a module name: only scope analysis tells
    outcome = analyze_text(Path("u.py"), text, Config(), rules=RULES)
    assert outcome.used_libcst
    assert [f.code for f in outcome.result.findings] == ["IK403"]


def test_ordinary_files_do_not_reach_libcst():
    for text in ("import subprocess\nsubprocess.run(['ls'])\n", "import os\ndef f():\n    os.environ['A'] = '1'\n"):
        outcome = analyze_text(Path("o.py"), text, Config(), rules=RULES)
        assert outcome.result.findings and not outcome.used_libcst


_FRAGMENTS = sorted({literal[i:j] for r in RULES for literal in (r.literals or ())
                     for i in range(len(literal)) for j in (i + 1, len(literal))} | {" ", "\n", "x", "_", "0x", "="})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=12).map("".join))
def test_trigger_literals_never_reject_a_trigger_match(text):
    for rule in RULES:
        assert rule.triggered(text) == bool(rule.trigger.search(text)), (rule.code, text)


def test_trigger_literals_are_derived_from_the_patterns():
    from interpkit.analyzer.source.walk import required_literals

    assert required_literals(r"atexit") == ("atexit",)
    assert required_literals(r"RTLD_GLOBAL|0[xX]0*100\b|\b256\b") == ("RTLD_GLOBAL", "100", "256")
    assert required_literals(r"(?i)atexit") is None
    assert required_literals(r"ab|x[yz]") is None          # an alternative without 3 literal characters
    assert required_literals(r"(?ms)\A(?=.*^x = \{)") is None


_LINE_FRAGMENTS = _FRAGMENTS + ["\n\n", "\r\n", "import ", "from ", " as ", ".", "(", "x\n", "\t", "é"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LINE_FRAGMENTS), max_size=24).map("".join))
def test_one_line_triggers_search_only_literal_lines_with_the_same_answer(text):
    for rule in RULES:
        assert rule.triggered(text) == bool(rule.trigger.search(text)), (rule.code, text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab_Z09 .\n\t()#'é"), max_size=40))
def test_identifier_words_are_the_word_regex_findall(text):
    from interpkit.analyzer.source.walk import identifier_words

    assert identifier_words(text) == set(_WORD_RE.findall(text))


def test_one_line_search_keeps_anchors_and_boundaries_of_the_whole_text():
    from interpkit.analyzer.source.walk import LoadedSourceRule, required_literals, within_one_line

    for pattern, text in [(r"^from x import y$", "a\nfrom x import y\nb"), (r"\bfoo\b", "xfoo\nfoo"),
                          (r"(?<=x)foo", "\nxfoo"), (r"(?<!x)foo", "xfoo\nfoo"), (r"\Afoo", "b\nfoo"),
                          (r"foo\B", "foo\nfoox"), (r"^\s*foo", "x\n  foo")]:
        assert within_one_line(pattern) == (pattern != r"^\s*foo"), pattern
        trigger = re.compile(pattern, re.MULTILINE)
        rule = LoadedSourceRule("T", object, trigger, literals=required_literals(pattern),
                                one_line=within_one_line(pattern))
        assert rule.triggered(text) == bool(trigger.search(text)), (pattern, text)


def test_patterns_that_can_span_lines_are_not_one_line():
    from interpkit.analyzer.source.walk import within_one_line

    for pattern in (r"a\sb", r"a[^x]b", r"(?s)a.b", r"a\nb", r"a\Wb", r"a\Z", r"(a)\1", r"a(?i:b)", r"a(?=\n)",
                    r"(?ms)\A(?=.*^x = \{)"):
        assert not within_one_line(pattern), pattern
    for pattern in (r"a.b", r"a[^\n]*b", r"a[\w.]+b", r"exec[lv]|spawn", r"\b256\b"):
        assert within_one_line(pattern), pattern


def test_iter_nodes_visits_what_ast_walk_does():
    """names.iter_nodes skips fields by their ASDL type: on real files it yields exactly ast.walk's
    nodes except contexts and operators."""
    from interpkit.analyzer.source.names import child_nodes, iter_nodes

    skipped = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop, ast.type_ignore)
    syntax = ("match x:\n    case {'a': 1, **rest}: pass\n    case [1, *others]: pass\n"
              "    case Point(x=0, y=_) as p: pass\n    case None | True: pass\n"
              "async def f(a: int = 1, *b, c, **d) -> None:\n    async with x as y:\n        pass\n"
              "    async for i in y: await i\n    print(f'{a!r:>{b}}', [j async for j in y])\n"
              "x: int = 1  # type: ignore\nglobal g\ndel a[0], b\nlambda *, k=1: k\n")
    texts = [p.read_text(encoding="utf-8") for p in _real_files(30)] + SAMPLES + CASES + [syntax]
    for text in texts:
        tree = ast.parse(text, type_comments=True)
        expected = sorted(id(n) for n in ast.walk(tree) if not isinstance(n, skipped))
        assert sorted(id(n) for n in iter_nodes(tree)) == expected
        for node in ast.walk(tree):
            assert [id(c) for c in child_nodes(node)] == [id(c) for c in ast.iter_child_nodes(node)
                                                           if not isinstance(c, skipped)]
