"""Which hazard a finding names, so the shims can pick a strategy without hard-wiring rule codes.

Rule codes belong to the analyzer's registry; the shims read each rule's hazard name (the
rule module is named after the hazard, STYLE.md convention 1) and match it here, in one place.
"""
from __future__ import annotations

import enum

from analyzer.findings import Finding


class Hazard(str, enum.Enum):
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

    def __str__(self) -> str:
        return self.value


# Checked in order against "<rule name> <rule module> <message>", lower-cased.
_KEYWORDS: tuple[tuple[Hazard, tuple[str, ...]], ...] = (
    (Hazard.PYO3, ("pyo3",)),
    (Hazard.GNU_UNIQUE, ("gnu-unique", "gnu_unique", "stb_gnu_unique")),
    (Hazard.SYMBOL_CLASH, ("clash", "collid", "interpos", "duplicate-export", "same symbol")),
    (Hazard.LIBPYTHON_LINK, ("libpython",)),
    (Hazard.UNRESOLVED_DEPENDENCY, ("rpath", "runpath", "unresolved", "not-found", "missing-dependency",
                                    "closure")),
    (Hazard.STATIC_TLS, ("static-tls", "static_tls", "initial-exec", "df_static_tls")),
    (Hazard.MISSING_INTERPRETER_SLOT, ("multiple-interpreters", "multiple_interpreters", "interpreter-slot",
                                       "per-interpreter-gil", "missing-slot", "no-slot")),
    (Hazard.SINGLE_PHASE, ("single-phase", "single_phase", "global-state-module-def", "m_size -1")),
    (Hazard.STATIC_STATE, ("static-type", "static_type")),
    (Hazard.GILSTATE, ("gilstate",)),
    (Hazard.RTLD_GLOBAL, ("rtld-global", "rtld_global")),
)


def hazard_of(finding: Finding) -> Hazard:
    """The rule's own hazard name decides; the message is read only when that name says nothing."""
    texts = []
    try:
        from analyzer.registry import all_rules

        registered = all_rules().get(finding.code)
        if registered is not None:
            texts.append(f"{registered.rule.name} {registered.module.__name__.rsplit('.', 1)[-1]}")
    except Exception:  # noqa: BLE001 - a broken rule module must not stop patching; fall back to the message
        pass
    texts.append(finding.message)
    for text in texts:
        text = text.lower()
        for hazard, words in _KEYWORDS:
            if any(w in text for w in words):
                return hazard
    return Hazard.OTHER
