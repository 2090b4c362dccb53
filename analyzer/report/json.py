"""The `interpkit-report/1` JSON contract (docs/report-contract.md); other tools read it."""
from __future__ import annotations

import json
from importlib import resources

from interpkit.core.findings import REPORT_SCHEMA, Report

SCHEMA_ID = REPORT_SCHEMA


def report_to_dict(report: Report) -> dict:
    return report.to_json()


def render(report: Report) -> str:
    return json.dumps(report_to_dict(report), indent=2, default=str) + "\n"


def load_schema() -> dict:
    return json.loads(resources.files("interpkit.analyzer.report").joinpath("schema.json").read_text())
