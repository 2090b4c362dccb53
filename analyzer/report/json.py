"""The `interpkit-report/1` JSON contract (docs/report-contract.md); other tools read it."""
from __future__ import annotations

import json
from importlib import resources

from interpkit.core.findings import Report

SCHEMA_ID = "interpkit-report/1"


def report_to_dict(report: Report) -> dict:
    from interpkit.core.version import VERSION as __version__

    out = {
        "schema": SCHEMA_ID,
        "tool": {"name": "interpkit", "version": __version__},
        "files": [fr.to_json() for fr in report.files],
        "summary": report.summary(),
    }
    out.update(report.extras)
    return out


def render(report: Report) -> str:
    return json.dumps(report_to_dict(report), indent=2, default=str) + "\n"


def load_schema() -> dict:
    return json.loads(resources.files("interpkit.analyzer.report").joinpath("schema.json").read_text())
