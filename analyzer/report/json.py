"""The `interpkit-report/1` JSON contract (docs/report-contract.md); other tools read it."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Iterator

from interpkit.core.findings import REPORT_SCHEMA, Report

SCHEMA_ID = REPORT_SCHEMA
_PIECE = 1 << 16   # characters written at a time


def report_to_dict(report: Report) -> dict:
    return report.to_json()


def render(report: Report) -> str:
    return json.dumps(report_to_dict(report), indent=2, default=str) + "\n"


def pieces(report: Report) -> Iterator[str]:
    """render(report), the same characters, in pieces of about 64 KiB: the encoder's output for a
    site-packages report is megabytes in millions of small strings, which render() holds at once."""
    buffer: list[str] = []
    size = 0
    for chunk in json.JSONEncoder(indent=2, default=str).iterencode(report_to_dict(report)):
        buffer.append(chunk)
        size += len(chunk)
        if size >= _PIECE:
            yield "".join(buffer)
            buffer, size = [], 0
    buffer.append("\n")
    yield "".join(buffer)


def write(report: Report, output: Path | None) -> None:
    """render(report) to `output` (stdout when None) as it is encoded, all or nothing for a file."""
    from interpkit.core.write import emit

    emit(pieces(report), output)


def load_schema() -> dict:
    return json.loads(resources.files("interpkit.analyzer.report").joinpath("schema.json").read_text())
