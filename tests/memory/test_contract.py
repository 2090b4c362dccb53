"""The `interpkit-memory/1` contract: real output of `interpkit memory` against its schema and its
documentation (docs/memory-contract.md), and the prediction and the cheapest option as they are defined."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from interpkit.cli import main
from interpkit.analyzer.memory.report import JSON_SCHEMA, SCHEMA

jsonschema = pytest.importorskip("jsonschema")
CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "memory-contract.md"


@pytest.fixture(scope="module")
def peers_report(built_fixtures, tmp_path_factory) -> dict:
    """The bigstate fixture (40 MiB of static arrays) in namespaces and under the peers, at N = 1 and 2."""
    from interpkit.analyzer.memory.measure import backend_unavailable

    reason = backend_unavailable("namespaces")
    if reason:
        pytest.skip(reason)
    so = built_fixtures("bigstate")
    out = tmp_path_factory.mktemp("contract") / "memory.json"
    status = main(["memory", str(so), "--call", "bigstate:checksum", "-n", "2",
                   "--backend", "namespaces,threads,processes,forked,forked-frozen", "--format", "json",
                   "-o", str(out)])
    assert status == 0
    return json.loads(out.read_text())


def test_real_output_follows_the_schema(peers_report):
    jsonschema.validate(peers_report, JSON_SCHEMA)
    assert peers_report["schema"] == SCHEMA
    # 1 is measured although only 2 was asked for: every prediction starts from it.
    assert [(r["backend"], r["interpreters"]) for r in peers_report["rows"]] == [
        (backend, n) for backend in ("namespaces", "threads", "processes", "forked", "forked-frozen") for n in (1, 2)]
    assert all(row["error"] is None for row in peers_report["rows"])


def test_every_field_is_documented(peers_report):
    documented = set(re.findall(r"`([a-z_]+)`", CONTRACT.read_text()))
    row_fields = set(JSON_SCHEMA["properties"]["rows"]["items"]["properties"])
    prediction_fields = set(JSON_SCHEMA["properties"]["predictions"]["additionalProperties"]["properties"])
    cheapest_fields = set(JSON_SCHEMA["properties"]["cheapest"]["oneOf"][1]["properties"])
    for names in (set(JSON_SCHEMA["properties"]), row_fields, prediction_fields, cheapest_fields):
        assert names <= documented, names - documented
    # ... and what the tool really writes is what the schema names (no undocumented row field).
    for row in peers_report["rows"]:
        assert set(row) <= row_fields | {"python"}, set(row) - row_fields


def test_predictions_start_from_one_interpreter(peers_report):
    rows = {(r["backend"], r["interpreters"]): r for r in peers_report["rows"]}
    for backend, prediction in peers_report["predictions"].items():
        one = rows[(backend, 1)]
        assert prediction["base_pss_bytes"] == one["total_pss_bytes"] == one["predicted_pss_bytes"]
        assert prediction["heap_bytes"] == one["heap_bytes"]   # (subinterpreters: the workload's part only)
        (sample,) = [s for s in peers_report["samples"] if (s["backend"], s["interpreters"]) == (backend, 1)]
        if backend in ("namespaces", "processes"):
            # Each has its own copies of the files: what the first wrote of them, the next writes again.
            assert prediction["files_source"] == "measured"
            assert prediction["files_bytes"] == sample["per_interpreter"][0]["objects"]["private_dirty_bytes"]
        else:
            assert prediction["files_source"] == "static"
            assert prediction["files_bytes"] == peers_report["estimate"]["backends"][backend][
                "private_per_interpreter_bytes"]
        two = rows[(backend, 2)]
        assert two["predicted_pss_bytes"] == prediction["base_pss_bytes"] + prediction["per_interpreter_bytes"]
        assert two["prediction_error"] == pytest.approx(
            (two["predicted_pss_bytes"] - two["total_pss_bytes"]) / two["total_pss_bytes"])
    assert set(peers_report["predictions"]) == {"namespaces", "threads", "processes", "forked", "forked-frozen"}


def test_the_namespaces_prediction_holds(peers_report):
    """The second namespace pays the fixture's 40 MiB again, its libpython's private pages and its
    heap: what the first one's heap and the ELF files predicted, within 10 %."""
    (two,) = [r for r in peers_report["rows"] if (r["backend"], r["interpreters"]) == ("namespaces", 2)]
    assert two["marginal_pss_bytes"] >= 40 * 1024 * 1024
    assert abs(two["prediction_error"]) <= 0.10, two


def test_cheapest_is_the_least_pss_at_the_largest_n(peers_report):
    cheapest = peers_report["cheapest"]
    at_two = sorted((r["total_pss_bytes"], r["backend"]) for r in peers_report["rows"] if r["interpreters"] == 2)
    assert cheapest["interpreters"] == 2
    assert [(e["total_pss_bytes"], e["backend"]) for e in cheapest["ranking"]] == at_two
    assert cheapest["backend"] == at_two[0][1]
    assert cheapest["line"].startswith(f"least memory for 2: {cheapest['backend']}, ")


def test_forked_children_share_the_preloaded_arrays(peers_report):
    """The parent imported the fixture before forking: a child does not pay its 40 MiB again; a process does."""
    rows = {(r["backend"], r["interpreters"]): r for r in peers_report["rows"]}
    arrays = 40 * 1024 * 1024
    assert rows[("processes", 2)]["marginal_pss_bytes"] >= arrays
    for backend in ("forked", "forked-frozen"):
        assert rows[(backend, 2)]["marginal_pss_bytes"] < arrays / 4
        assert rows[(backend, 2)]["shared_bytes"] >= arrays
