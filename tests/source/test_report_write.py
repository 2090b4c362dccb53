"""The JSON report written in pieces is, character for character, the rendered report."""
from __future__ import annotations

from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.report import json as report_json
from interpkit.analyzer.scan import scan_paths
from interpkit.core.errors import InputError

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"


@pytest.fixture(scope="module")
def report():
    return scan_paths([MODELS / "hazards"], Config(follow_imports=False))


def test_pieces_join_to_the_rendered_report(report, monkeypatch):
    monkeypatch.setattr(report_json, "_PIECE", 64)    # many pieces, even from a small report
    pieces = list(report_json.pieces(report))
    assert len(pieces) > 10
    assert "".join(pieces) == report_json.render(report)


def test_write_to_a_file_and_to_stdout(report, tmp_path, capsys):
    out = tmp_path / "report.json"
    report_json.write(report, out)
    assert out.read_text(encoding="utf-8") == report_json.render(report)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]    # no temp file left behind
    report_json.write(report, None)
    assert capsys.readouterr().out == report_json.render(report)
    with pytest.raises(InputError, match="no such directory"):
        report_json.write(report, tmp_path / "missing" / "report.json")
