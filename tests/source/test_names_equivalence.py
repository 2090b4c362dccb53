"""The fast source pass (names.NameTable before LibCST, see analyzer/source/names.py) reports
exactly what the full analysis reports: on every rule's own samples, on hand-written cases that
stress the name table, and differentially over real installed trees (libcst's and rich's own
source, and pip's and the standard library's when present)."""
from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.registry import rules_for
from interpkit.analyzer.source.batch import result_to_json
from interpkit.analyzer.source.names import NameTable
from interpkit.analyzer.source.walk import analyze_file, analyze_text, source_rules

RULES = source_rules(Config())
SAMPLES = [pytest.param(s, id=f"{r.rule.code}-{kind}{i}") for r in rules_for("source")
           for kind in ("valid", "invalid") for i, s in enumerate(getattr(r.module, kind.upper()))]

# Spellings that a module-level import table alone would get wrong: shadowing, locals named
# like modules, imports inside functions, relative and star imports, class attributes,
# aliases of aliases, attribute chains through calls and subscripts.
TRICKY = [
    "import os\ndef f(os):\n    os.fork()\n",
    "def f():\n    import os\n    os.fork()\nos.fork()\n",
    "os = None\nos.fork()\n",
    "class os:\n    def fork(self): pass\nos.fork()\n",
    "from . import subprocess\nsubprocess.run(['x'])\n",
    "from .subprocess import run\nrun(['x'])\n",
    "from os import *\nfork()\n",
    "import subprocess as sp\nrun = sp.run\nrun(['ls'])\n",
    "import subprocess\nclass A:\n    run = subprocess.run\n    def f(self):\n        self.run(['ls'])\n",
    "import subprocess\nsubprocess.Popen(['ls']).wait()\nsubprocess.run(['ls'])\n",
    "import os\nos.environ.get('A')\nx = os.environ['A']\n",
    "import os\ndef f(env=os.environ):\n    env['A'] = '1'\n    os.environ.update(A='1')\n",
    "from os import environ\nenviron['A'] = '1'\n",
    "import os.path\nos.path.join(__file__, 'x')\nopen(os.path.dirname(__file__))\n",
    "import os.path as osp, signal as s\ns.signal(1, print)\nosp.join(__file__)\n",
    "try:\n    import simplejson as json\nexcept ImportError:\n    import json\nimport importlib\nimportlib.import_module(name)\n",
    "import ctypes\nL = ctypes.CDLL\nL('x', ctypes.RTLD_GLOBAL)\nctypes.CDLL('y', mode=256)\n",
    "REG = {}\ntry:\n    CACHE = []\nexcept Exception:\n    pass\ndef f():\n    CACHE.append(1)\n    REG[1] = 2\n",
    "REG = {}\ndef f(REG):\n    REG[1] = 2\nlambda: REG.update(a=1)\n",
    "import threading\nt = threading.Thread(target=print, daemon=True)\nt.start()\n",
    "import atexit\n@atexit.register\ndef bye():\n    pass\n",
    "def g():\n    global os\n    import os\ng()\nos.fork()\n",
]


def _both(text: str) -> tuple[list, list]:
    fast = analyze_text(Path("case.py"), text, Config(), rules=RULES, fast=True).result
    full = analyze_text(Path("case.py"), text, Config(), rules=RULES, fast=False).result
    return result_to_json(fast)["findings"], result_to_json(full)["findings"]


@pytest.mark.parametrize("sample", SAMPLES)
def test_rule_samples_same_findings(sample):
    fast, full = _both(sample)
    assert fast == full


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_spellings_same_findings(text):
    fast, full = _both(text)
    assert fast == full


def test_every_invalid_sample_still_reports_on_the_fast_path():
    """Neither the names filter nor the ast pass drops a finding: each INVALID sample without an
    ignore comment reports on its `# bad` line, through the ast visitors alone (no LibCST)."""
    from interpkit.analyzer.source.walk import marked_lines

    for registered in rules_for("source"):
        rule = next(r for r in RULES if r.code == registered.rule.code)
        for sample in registered.module.INVALID:
            outcome = analyze_text(Path("s.py"), sample, Config(), rules=[rule], fast=True)
            if "interpkit: ignore" not in sample:
                assert [f.line for f in outcome.result.findings] == marked_lines(sample), (registered.rule.code, sample)
                assert not outcome.used_libcst, (registered.rule.code, sample)


def test_name_table_candidates_cover_aliases_and_locals():
    table = NameTable.from_tree(ast.parse(
        "import os.path as osp\nfrom subprocess import run as r\nimport ctypes\ndef f(signal): pass\n"))
    assert "os.path.join" in table.candidates("osp.join")
    assert "subprocess.run" in table.candidates("r")
    assert "ctypes.CDLL" in table.candidates("ctypes.CDLL")
    assert "*.signal.signal" in table.candidates("signal.signal")   # a parameter: any scope prefix
    assert table.candidates("self.run") == set()
    assert not table.could_match("self.run", {"subprocess.run"})
    assert table.could_match("signal.signal", {"signal.signal"})


def _trees() -> list[Path]:
    roots = []
    for name in ("libcst", "rich"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            roots.append(Path(spec.origin).parent)
    stdlib = Path(ast.__file__).parent
    roots += [stdlib / "multiprocessing", stdlib / "concurrent"]
    return [r for r in roots if r.is_dir()]


@pytest.mark.slow
def test_differential_over_real_trees():
    """Fast and full analysis agree file by file on real code (results and import statements),
    and the fast pass really skips LibCST for most of it."""
    files = sorted(f for root in _trees() for f in root.rglob("*.py"))
    assert len(files) > 300, "expected libcst's and rich's installed sources"
    skipped = 0
    findings = 0
    for path in files:
        fast = analyze_file(path, Config(), rules=RULES, fast=True, import_module=("m", False))
        full = analyze_file(path, Config(), rules=RULES, fast=False, import_module=("m", False))
        assert json.dumps(result_to_json(fast.result)) == json.dumps(result_to_json(full.result)), path
        assert fast.imports == full.imports, path
        skipped += full.used_libcst and not fast.used_libcst
        findings += len(full.result.findings)
    assert findings > 20          # the trees do exercise the rules
    assert skipped > 20           # and the filter is doing its job (43 files of these trees)


def test_imports_from_the_shared_parse_equal_read_imports(tmp_path):
    from interpkit.analyzer.source.imports import read_imports

    source = ("import os\ntry:\n    import numpy\nexcept ImportError:\n    numpy = None\n"
              "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
              "def f():\n    import json\n    importlib.import_module('yaml')\nfrom . import sibling\n")
    path = tmp_path / "pkg" / "mod.py"
    path.parent.mkdir()
    path.write_text(source)
    outcome = analyze_file(path, Config(), fast=True, import_module=("pkg.mod", False))
    assert outcome.imports == read_imports(path, "pkg.mod", False)
    assert {r.name for r in outcome.imports} >= {"os", "numpy", "torch", "json", "yaml", "pkg"}


def test_syntax_error_file_still_gives_imports(tmp_path):
    from interpkit.analyzer.source.imports import read_imports

    path = tmp_path / "broken.py"
    path.write_text("import os\ndef f(:\n")
    outcome = analyze_file(path, Config(), import_module=("broken", False))
    assert [f.code for f in outcome.result.findings] == ["IK901"]
    assert outcome.imports == read_imports(path, "broken", False) == []
    if sys.version_info >= (3, 8):
        misplaced = tmp_path / "typecomment.py"
        misplaced.write_text("import os\nx = 1  # type: int\ndef g():\n    pass  # type: ignore\n")
        assert analyze_file(misplaced, Config(), import_module=("t", False)).imports == \
            read_imports(misplaced, "t", False)
