"""The registry is the one rule loader, and each family folder holds its own code range."""
from __future__ import annotations

import subprocess
import sys

import pytest

from interpkit.analyzer.registry import FAMILIES_BY_KIND, RULE_PACKAGE_PREFIX, all_rules, rule_named, rules_for

# Folder -> the hundreds its codes use (IK1xx-IK3xx ELF, IK4xx source, IK5xx torch.package, IK9xx inputs).
FAMILY_CODES = {"elf": "123", "source": "4", "package": "5", "inputs": "9"}


def test_every_rule_sits_in_the_folder_of_its_code_family():
    for code, registered in all_rules().items():
        family = registered.module.__name__.removeprefix(RULE_PACKAGE_PREFIX).split(".")[0]
        assert code[2] in FAMILY_CODES[family], f"{code} is in rules/{family}/"


def test_the_kinds_partition_the_table():
    by_kind = [r.rule.code for kind in FAMILIES_BY_KIND for r in rules_for(kind)]
    assert sorted(by_kind) == list(all_rules()) and len(by_kind) == len(set(by_kind))
    for kind in FAMILIES_BY_KIND:
        codes = [r.rule.code for r in rules_for(kind)]
        assert codes == sorted(codes), f"{kind} rules are not sorted by code"


def test_rule_named_finds_by_stable_name_and_refuses_unknown():
    assert rule_named("inputs", "python-syntax-error").rule.code == "IK901"
    with pytest.raises(KeyError, match="no source rule named"):
        rule_named("source", "python-syntax-error")


@pytest.mark.integration  # a fresh interpreter, to see what loading one family imports
def test_loading_the_elf_rules_does_not_import_libcst():
    code = ("import sys\nfrom interpkit.analyzer.registry import rules_for\n"
            "assert rules_for('elf')\nprint('libcst' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"]


def test_declared_codes_are_the_loaded_rules_codes():
    from interpkit.analyzer.registry import all_rules, declared_codes

    assert declared_codes() == frozenset(all_rules())


def test_select_validation_imports_no_rule_family():
    """`--select`/`--ignore` are checked from the rule modules' source: an ELF-only scan's
    command line never loads the source families' parser (libcst) nor any rule module."""
    code = ("import sys\nfrom interpkit.output import rule_codes, unknown_rule_codes\n"
            "assert rule_codes('IK1,IK203') == ('IK1', 'IK203')\n"
            "print(unknown_rule_codes(['IK999', 'IK4', 'XY']))\n"
            "print(sorted(m for m in sys.modules if m == 'libcst' or m.startswith('interpkit.analyzer.rules.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["['IK999', 'XY']", "[]"]
