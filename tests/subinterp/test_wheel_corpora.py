"""The static subinterpreters verdict against each Python's own isolated-interpreter import, on
corpora of real cp313/cp314/cp315 wheels (fixtures/wheel_corpus.py: 70-80 popular packages with
compiled code, built once and cached by content hash; fixtures/corpus_agreement.py imports each
module in its own child, crash-safe, and leaves out modules broken outside subinterpreters too)."""
from __future__ import annotations

import subprocess

import pytest

from fixtures.corpus_agreement import compare, observe
from fixtures.wheel_corpus import CorpusUnavailable, build_corpus, corpus_manifest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("version", ["3.13", "3.14", "3.15"])
def test_static_verdict_matches_cpython_on_real_wheels(python_for, version):
    python = python_for(version)
    try:
        build_corpus(version)
    except (CorpusUnavailable, subprocess.TimeoutExpired) as exc:
        pytest.skip(str(exc))
    assert len(corpus_manifest(version)["wheels"]) >= 60
    row = compare(version, observe(version, python))
    print(f"\n{version}: compared {row['compared']}, agreed {row['agreed']} ({row['agreement']}), "
          f"wrong {row['wrong']}, unknown {row['unknown']}")
    for r in row["disagreements"]:
        print(f"  differs: {r['module']} predicted {r['predicted']} observed {r['observed']} ({r['status']}) "
              f"{r['codes']} {r['message'][:120]}")
    assert row["compared"] >= 200
    assert row["wrong"] == 0
    assert row["unknown"] <= 0.02 * row["compared"]
    assert row["agreement"] >= 0.97
