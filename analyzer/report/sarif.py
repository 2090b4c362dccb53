"""SARIF 2.1.0 rendering of the same findings the table and JSON show."""
from __future__ import annotations

import json

from interpkit.core.findings import Report, Severity
from interpkit.analyzer.registry import all_rules

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _rule_descriptor(code: str) -> dict:
    registered = all_rules().get(code)
    if registered is None:
        return {"id": code}
    rule = registered.rule
    descriptor = {
        "id": code,
        "name": rule.name,
        "shortDescription": {"text": rule.title},
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {"backends": sorted(b.value for b in rule.backends)},
    }
    if rule.doc:
        descriptor["fullDescription"] = {"text": rule.doc.strip().splitlines()[0]}
        descriptor["help"] = {"text": rule.doc.strip(), "markdown": rule.doc.strip()}
    return descriptor


def _location(finding) -> dict:
    physical: dict = {"artifactLocation": {"uri": finding.path.as_posix()}}
    if finding.line is not None:
        region = {"startLine": finding.line}
        if finding.column is not None:
            region["startColumn"] = finding.column  # 1-based, like SARIF
        physical["region"] = region
    location: dict = {"physicalLocation": physical}
    if finding.symbol:
        location["logicalLocations"] = [{"name": finding.symbol, "kind": "member"}]
    return location


def report_to_sarif(report: Report) -> dict:
    from interpkit.core.version import VERSION as __version__

    codes = sorted({f.code for f in report.findings})
    index = {code: i for i, code in enumerate(codes)}
    results = []
    for f in report.findings:
        result = {
            "ruleId": f.code,
            "ruleIndex": index[f.code],
            "level": _LEVEL[f.severity],
            "message": {"text": f.message + (f" Fix: {f.fix}" if f.fix else "")},
            "locations": [_location(f)],
            "properties": {"backends": sorted(b.value for b in f.backends)},
        }
        results.append(result)
    notifications = [
        {"level": "error", "message": {"text": fr.error or "unreadable"},
         "locations": [{"physicalLocation": {"artifactLocation": {"uri": fr.path.as_posix()}}}]}
        for fr in report.files if fr.error
    ]
    run = {
        "tool": {"driver": {
            "name": "interpkit",
            "version": __version__,
            "informationUri": "https://github.com/interpkit/interpkit",
            "rules": [_rule_descriptor(c) for c in codes],
        }},
        "results": results,
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def render(report: Report) -> str:
    return json.dumps(report_to_sarif(report), indent=2) + "\n"
