"""`interpkit memory` end to end: JSON shape against its schema, table, plot, one-line errors."""
from __future__ import annotations

import json

import pytest

from interpkit.cli import main
from interpkit.analyzer.memory.report import JSON_SCHEMA, SCHEMA

jsonschema = pytest.importorskip("jsonschema")


def test_json_report_shape(built_fixtures, tmp_path):
    so = built_fixtures("bigstate")
    out = tmp_path / "memory.json"
    status = main(["memory", str(so), "--interpreters", "1,2", "--backend", "threads", "--format", "json",
                   "-o", str(out)])
    assert status == 0
    data = json.loads(out.read_text())
    jsonschema.validate(data, JSON_SCHEMA)
    assert data["schema"] == SCHEMA
    assert data["workload"]["modules"] == ["bigstate"]
    assert [(r["backend"], r["interpreters"]) for r in data["rows"]] == [("threads", 1), ("threads", 2)]
    first, second = data["rows"]
    assert first["error"] is None and first["total_pss_bytes"] > 40 * 1024 * 1024
    assert second["marginal_pss_bytes"] < first["marginal_pss_bytes"]  # a thread does not copy the arrays
    roles = {o["role"] for o in data["estimate"]["objects"]}
    assert {"libpython", "extension", "library", "loader"} <= roles


def test_estimate_only_table(built_fixtures, capsys):
    so = built_fixtures("bigstate")
    assert main(["memory", str(so), "--estimate-only"]) == 0
    text = capsys.readouterr().out
    assert "Static estimate" in text and "namespaces" in text and "copies" in text


def test_plot(built_fixtures, tmp_path):
    pytest.importorskip("matplotlib")
    so = built_fixtures("bigstate")
    png = tmp_path / "memory.png"
    assert main(["memory", str(so), "-n", "1,2", "--backend", "threads", "--plot", str(png),
                 "-o", str(tmp_path / "table.txt")]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "threads" in (tmp_path / "table.txt").read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["memory"], "cannot measure nothing"),
    (["memory", "--import", "no_such_module_for_interpkit"], "cannot find module"),
    (["memory", "/no/such/file.so"], "no such file"),
    (["memory", "--import", "json", "--call", "json"], "expected module:function"),
    (["memory", "--import", "json", "--plot", "/no/such/folder/memory.png"], "cannot plot to"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("interpkit: error:") and message in err and "\n" not in err
