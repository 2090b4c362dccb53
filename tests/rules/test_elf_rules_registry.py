"""Registry-driven checks on every ELF rule: docs, codes, metadata, purity."""
from __future__ import annotations

import ast
import inspect

import pytest

from interpkit.core.findings import Backend, Verdict
from interpkit.analyzer.registry import REQUIRED_DOC_SECTIONS, all_rules, rules_of

ELF_RULES = rules_of("interpkit.analyzer.rules.elf")


def test_elf_rules_exist_and_codes_are_in_their_families():
    codes = [r.rule.code for r in ELF_RULES]
    assert len(codes) == len(set(codes)) >= 15
    assert all(code[:3] in ("IK1", "IK2", "IK3") for code in codes)
    names = [r.rule.name for r in all_rules().values()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("registered", ELF_RULES, ids=lambda r: r.rule.code)
def test_rule_doc_has_required_sections(registered):
    doc = registered.rule.doc
    assert doc == registered.module.__doc__
    for heading in REQUIRED_DOC_SECTIONS:
        assert heading in doc, f"{registered.rule.code} lacks {heading}"
    assert "## References" in doc


@pytest.mark.parametrize("registered", ELF_RULES, ids=lambda r: r.rule.code)
def test_rule_metadata_is_consistent(registered):
    rule = registered.rule
    assert rule.name == rule.name.lower() and " " not in rule.name
    module_file = registered.module.__name__.rsplit(".", 1)[1]
    assert module_file == rule.name.replace("-", "_"), "module is named after the hazard"
    for backend, verdict in rule.verdicts.items():
        # fail/unknown is what the hazard forces on a backend; ok says the backend handles the
        # hazard by design (the copies runtime relinks each interpreter's copy).
        assert isinstance(backend, Backend) and isinstance(verdict, Verdict)
        assert backend in rule.backends or rule.backends == frozenset(Backend)
    assert callable(registered.check)


@pytest.mark.parametrize("registered", ELF_RULES, ids=lambda r: r.rule.code)
def test_rule_is_pure(registered):
    """Rules read facts only: no elftools, no printing, no file access."""
    tree = ast.parse(inspect.getsource(registered.module))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.startswith(("elftools", "rich", "subprocess", "os")) for m in imported)
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"print", "open", "exit"}
