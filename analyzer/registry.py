"""The one table of rule codes: each rule is a module under analyzer/rules/<family>/.

Families (bandit-style ranges; codes are never reused, removed rules stay listed):
  IK1xx  init kind and declared multi-interpreter support (ELF)
  IK2xx  process-global state in binaries (static types, GILState, GNU_UNIQUE, static TLS)
  IK3xx  linkage and symbol tables (libpython linkage, clashes, RPATH, closure)
  IK4xx  model source (libcst)
  IK5xx  torch.package
  IK9xx  unreadable inputs
"""
from __future__ import annotations

import ast
import enum
import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from interpkit.core.findings import ALL_BACKENDS, Backend, DataValue, Finding, Severity, Verdict, findings_data


class Fixable(enum.StrEnum):
    ALWAYS = "always"
    SOMETIMES = "sometimes"
    NONE = "none"


class Lifecycle(enum.StrEnum):
    STABLE = "stable"
    PREVIEW = "preview"
    REMOVED = "removed"


REQUIRED_DOC_SECTIONS = ("## What it does", "## Why is this bad?", "## Example", "## Use instead")


@dataclass(frozen=True)
class Rule:
    code: str
    name: str                         # the hazard, kebab-case: "single-phase-init"
    title: str                        # one line for `interpkit rules`
    severity: Severity
    backends: frozenset[Backend] = ALL_BACKENDS
    # What the hazard means for each backend's verdict when the rule fires.
    verdicts: dict[Backend, Verdict] = field(default_factory=dict)
    fix: str | None = None            # short imperative, like ruff's fix_title
    fixable: Fixable = Fixable.NONE
    doc: str = ""                     # the rule module's docstring (ruff headings)
    lifecycle: Lifecycle = Lifecycle.STABLE

    def finding(
        self,
        path: Path,
        message: str,
        *,
        symbol: str | None = None,
        line: int | None = None,
        column: int | None = None,
        severity: Severity | None = None,
        fix: str | None = None,
        backends: frozenset[Backend] | None = None,
        verdicts: dict[Backend, Verdict] | None = None,
        data: dict[str, DataValue | list[str] | None] | None = None,
    ) -> Finding:
        used_verdicts = self.verdicts if verdicts is None else verdicts
        return Finding(
            code=self.code,
            severity=self.severity if severity is None else severity,
            message=message,
            path=Path(path),
            line=line,
            column=column,
            symbol=symbol,
            backends=self.backends if backends is None else backends,
            fix=fix if fix is not None else self.fix,
            verdicts=tuple(sorted(used_verdicts.items())),
            data=findings_data(data),
        )


# Rule families are packages; every module in them that defines RULE is a rule. A scan kind
# loads only its own families, so the ELF scan never imports libcst (the source rules' parser).
RULE_PACKAGE_PREFIX = "interpkit.analyzer.rules."
FAMILIES_BY_KIND: dict[str, tuple[str, ...]] = {
    "elf": ("elf",),             # IK1xx-IK3xx: check(facts) over one ELF file
    "source": ("source", "package"),  # IK4xx, IK5xx: libcst visitors (VISITOR, TRIGGER)
    "inputs": ("inputs",),       # IK9xx: inputs that cannot be read at all
}
RULE_PACKAGES = tuple(RULE_PACKAGE_PREFIX + family for families in FAMILIES_BY_KIND.values() for family in families)

# Codes that once existed and must never be handed out again.
REMOVED_CODES: dict[str, str] = {}

_CODE_RE = re.compile(r"^IK\d{3}$")


@dataclass(frozen=True)
class RegisteredRule:
    rule: Rule
    module: object  # the rule module; exposes check(...)

    @property
    def check(self):
        return getattr(self.module, "check")


@cache
def _family(package_name: str) -> tuple[RegisteredRule, ...]:
    package = importlib.import_module(package_name)
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package_name}.{info.name}")
        rule = getattr(module, "RULE", None)
        if rule is None:
            continue
        if not _CODE_RE.match(rule.code):
            raise AssertionError(f"rule code {rule.code!r} in {module.__name__} is not IKnnn")
        if rule.code in REMOVED_CODES:
            raise AssertionError(f"rule code {rule.code} was removed and cannot be reused")
        found.append(RegisteredRule(rule, module))
    return tuple(found)


@cache
def rules_for(kind: str) -> tuple[RegisteredRule, ...]:
    """The rules one scan kind runs ("elf", "source", "inputs"), sorted by code."""
    found = [r for family in FAMILIES_BY_KIND[kind] for r in _family(RULE_PACKAGE_PREFIX + family)]
    return tuple(sorted(found, key=lambda r: r.rule.code))


@cache
def all_rules() -> dict[str, RegisteredRule]:
    table: dict[str, RegisteredRule] = {}
    for kind in FAMILIES_BY_KIND:
        for registered in rules_for(kind):
            if registered.rule.code in table:
                raise AssertionError(f"rule code {registered.rule.code} defined twice")
            table[registered.rule.code] = registered
    return dict(sorted(table.items()))


@cache
def declared_codes() -> frozenset[str]:
    """Every rule's code as its module declares it (`RULE = Rule(code="IKnnn", ...)`), read with
    ast from the family folders without importing a rule: `--select`/`--ignore` are checked on
    the command line before the scan, and importing the source families would load libcst for
    an ELF-only scan. tests/rules checks it against `all_rules()`."""
    rules = Path(__file__).resolve().parent / "rules"
    codes = set()
    for package in RULE_PACKAGES:
        for path in sorted((rules / package.removeprefix(RULE_PACKAGE_PREFIX)).glob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
                if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "RULE" for t in node.targets)
                        and isinstance(node.value, ast.Call)):
                    codes.update(k.value.value for k in node.value.keywords
                                 if k.arg == "code" and isinstance(k.value, ast.Constant))
    return frozenset(codes)


def rule_named(kind: str, name: str) -> RegisteredRule:
    """One rule of a scan kind by its stable name ("python-syntax-error"), for the engines that
    call a rule's helpers themselves: they ask here instead of importing the rule module, so
    rules may import the engines (walk.py, elf facts) without a cycle."""
    for registered in rules_for(kind):
        if registered.rule.name == name:
            return registered
    raise KeyError(f"no {kind} rule named {name!r}")


def rules_of(package_name: str) -> list[RegisteredRule]:
    """The rules of one family package, e.g. "interpkit.analyzer.rules.elf"."""
    return list(_family(package_name))


def code_matches(code: str, patterns: tuple[str, ...]) -> bool:
    """`IK2` selects IK2xx, `IK203` selects one rule, `ALL` everything (ruff-style prefixes)."""
    return any(p.upper() == "ALL" or code.startswith(p.upper()) for p in patterns)
