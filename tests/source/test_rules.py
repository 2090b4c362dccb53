"""Every source rule, driven by the registry: docs, and the VALID/INVALID samples kept in the rule."""
from __future__ import annotations

from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.registry import REQUIRED_DOC_SECTIONS
from interpkit.analyzer.source.walk import marked_lines, registered_source_rules, scan_source_text

RULES = registered_source_rules()
VALID = [pytest.param(r.module, s, id=f"{r.rule.code}-valid{i}") for r in RULES for i, s in enumerate(r.module.VALID)]
INVALID = [pytest.param(r.module, s, id=f"{r.rule.code}-invalid{i}") for r in RULES for i, s in enumerate(r.module.INVALID)]


def test_source_rules_are_registered():
    codes = {r.rule.code for r in RULES}
    assert {"IK401", "IK402", "IK403", "IK404", "IK405", "IK406", "IK407", "IK408", "IK409",
            "IK501", "IK502", "IK503"} <= codes


@pytest.mark.parametrize("registered", RULES, ids=lambda r: r.rule.code)
def test_rule_doc_has_ruff_headings(registered):
    doc = registered.rule.doc
    assert doc.splitlines()[0].startswith(f"{registered.rule.code}: ")
    for heading in REQUIRED_DOC_SECTIONS + ("## References",):
        assert heading in doc, f"{registered.rule.code} lacks {heading}"
    assert registered.module.INVALID and registered.module.VALID
    # at least one sample spells the call through an alias (`as ...`)
    assert any(" as " in s for s in registered.module.INVALID), registered.rule.code


@pytest.mark.parametrize("module,sample", VALID)
def test_valid_sample_has_no_finding(module, sample):
    assert module.check(Path("sample.py"), sample) == []


@pytest.mark.parametrize("module,sample", INVALID)
def test_invalid_sample_flags_exactly_the_marked_lines(module, sample):
    found = module.check(Path("sample.py"), sample)
    assert [(f.code, f.line) for f in found] == [(module.RULE.code, n) for n in marked_lines(sample)]
    for f in found:
        assert f.column and f.column >= 1 and f.message and f.fix


@pytest.mark.parametrize("module,sample", INVALID)
def test_invalid_sample_through_the_batched_walk(module, sample):
    """The same answer when every rule rides one pass (triggers and batching must not lose it)."""
    result = scan_source_text(Path("sample.py"), sample, Config())
    mine = [(f.code, f.line) for f in result.findings if f.code == module.RULE.code]
    assert mine == [(module.RULE.code, n) for n in marked_lines(sample)]


def test_suppression_samples_exist_for_every_rule():
    for r in RULES:
        assert any("interpkit: ignore" in s for s in r.module.INVALID), r.rule.code


def test_disabled_rule_does_not_run():
    text = "import os\nos.fork()\n"
    assert [f.code for f in scan_source_text(Path("a.py"), text, Config()).findings] == ["IK403"]
    assert scan_source_text(Path("a.py"), text, Config(ignore=("IK403",))).findings == []
    assert scan_source_text(Path("a.py"), text, Config(select=("IK5",))).findings == []
