"""Rules on the fixture model files: exact code and line per `# bad` marker, nothing on the clean model."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.core.findings import FileKind
from interpkit.analyzer.source.batch import analyze_source_files
from interpkit.analyzer.source.walk import marked_lines

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"
HAZARDS = sorted((MODELS / "hazards").glob("IK*.py"))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("path", HAZARDS, ids=lambda p: p.stem)
def test_hazard_file_reports_its_code_on_marked_lines(path):
    [result] = analyze_source_files([path], Config())
    assert result.kind is FileKind.PYTHON
    assert [(f.code, f.line) for f in result.findings] == [(path.stem, n) for n in marked_lines(path.read_text())]


def test_every_source_rule_has_a_hazard_fixture():
    from interpkit.analyzer.source.walk import registered_source_rules

    assert {p.stem for p in HAZARDS} == {r.rule.code for r in registered_source_rules()}


def test_suppression_comments_hide_only_the_named_codes():
    path = MODELS / "hazards" / "suppressed.py"
    [result] = analyze_source_files([path], Config())
    assert [(f.code, f.line) for f in result.findings] == [("IK406", n) for n in marked_lines(path.read_text())]


def test_clean_model_has_no_findings():
    files = sorted((MODELS / "clean").rglob("*.py"))
    results = analyze_source_files(files, Config())
    assert len(results) == 3
    assert all(r.kind is FileKind.PYTHON for r in results)
    assert [f for r in results for f in r.findings] == []


def test_syntax_error_is_one_finding_and_the_scan_goes_on():
    broken = MODELS / "broken"
    paths = [broken / "bad_syntax.py", broken / "good.py", broken / "latin1.py"]
    bad, good, latin1 = analyze_source_files(paths, Config())
    assert bad.kind is FileKind.PYTHON
    assert [(f.code, f.line) for f in bad.findings] == [("IK901", 5)]
    assert "expected ':'" in bad.findings[0].message
    assert [(f.code, f.line) for f in good.findings] == [("IK406", 3)]
    assert latin1.kind is FileKind.ERROR and "cannot decode" in latin1.error and "\n" not in latin1.error


def test_results_are_cached_by_path_size_and_mtime(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\nos.fork()\n")
    [first] = analyze_source_files([source], Config())
    import sqlite3

    store = Path(os.environ["INTERPKIT_CACHE_DIR"]) / "source-v2.sqlite"   # analyzer/source/batch.py
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone() == (1,)
    [again] = analyze_source_files([source], Config())
    assert [(f.code, f.line) for f in again.findings] == [(f.code, f.line) for f in first.findings] == [("IK403", 2)]
    source.write_text("import os\n\nos.fork()\n")  # new size → new key, never the stale answer
    [changed] = analyze_source_files([source], Config())
    assert [(f.code, f.line) for f in changed.findings] == [("IK403", 3)]


@pytest.mark.integration  # starts a process pool
def test_process_pool_gives_the_same_answers(tmp_path):
    paths = []
    for i in range(30):
        p = tmp_path / f"m{i}.py"
        p.write_text("import os\n" + "\n" * i + "os.chdir('/')\n")
        paths.append(p)
    pooled = analyze_source_files(paths, Config(), jobs=2, cache=False)
    assert [(r.path, [f.line for f in r.findings]) for r in pooled] == [(p, [i + 2]) for i, p in enumerate(paths)]
