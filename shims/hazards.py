"""Which hazard a finding names, so the shims can pick a strategy without hard-wiring rule codes.

Rule codes belong to the analyzer's registry; the shims map each rule's stable name (the
rule module is named after the hazard, docs/conventions.md convention 1) to a hazard here, in one table.
"""
from __future__ import annotations

import enum

from interpkit.core.findings import Finding


class Hazard(enum.StrEnum):
    GNU_UNIQUE = "gnu-unique"
    SYMBOL_CLASH = "symbol-clash"
    LIBPYTHON_LINK = "libpython-link"
    UNRESOLVED_DEPENDENCY = "unresolved-dependency"     # RPATH/RUNPATH, missing DT_NEEDED
    SINGLE_PHASE = "single-phase"                       # state in C globals: single-phase init, m_size -1,
    STATIC_STATE = "static-state"                       # static type objects
    GILSTATE = "gilstate"
    RTLD_GLOBAL = "rtld-global"
    MISSING_INTERPRETER_SLOT = "missing-interpreter-slot"
    STATIC_TLS = "static-tls"
    PYO3 = "pyo3"
    OTHER = "other"


# Each rule's hazard, by the rule's stable name (a code and its name never change meaning).
# Rules not listed here name nothing a shim acts on.
HAZARD_OF_RULE: dict[str, Hazard] = {
    "single-phase-init": Hazard.SINGLE_PHASE,
    "mixed-init-kinds": Hazard.SINGLE_PHASE,
    "global-state-module-def": Hazard.SINGLE_PHASE,
    "missing-per-interpreter-gil-slot": Hazard.MISSING_INTERPRETER_SLOT,
    "static-type-object": Hazard.STATIC_STATE,
    "gilstate-api": Hazard.GILSTATE,
    "gnu-unique-symbol": Hazard.GNU_UNIQUE,
    "static-tls": Hazard.STATIC_TLS,
    "libpython-needed": Hazard.LIBPYTHON_LINK,
    "libpython-unlinked": Hazard.LIBPYTHON_LINK,
    "exported-symbol-clash": Hazard.SYMBOL_CLASH,
    "rpath-search-path": Hazard.UNRESOLVED_DEPENDENCY,
    "unresolved-dependency": Hazard.UNRESOLVED_DEPENDENCY,
    "rtld-global-load": Hazard.RTLD_GLOBAL,
}


def hazard_of(finding: Finding) -> Hazard:
    from interpkit.analyzer.registry import all_rules

    registered = all_rules().get(finding.code)
    if registered is None:
        return Hazard.OTHER
    name = registered.rule.name
    if name == "binding-generator":
        # One rule names every generator (in the finding's data); of them only PyO3 decides
        # what can be fixed.
        return Hazard.PYO3 if finding.datum("generator") == "pyo3" else Hazard.OTHER
    return HAZARD_OF_RULE.get(name, Hazard.OTHER)
