"""Progress advances per file in every phase (Python sources from the worker processes, ELF
files), and off a terminal it is plain lines on stderr (issue 15, item 4)."""
from __future__ import annotations

import io
import re
import shutil
import sys

import pytest

from interpkit.analyzer import scan as scan_module
from interpkit.analyzer.config import Config


@pytest.mark.integration  # starts the worker processes
def test_plain_progress_counts_every_file_of_every_phase(built_fixtures, tmp_path, monkeypatch):
    for index in range(30):   # enough files for the process pool
        (tmp_path / f"m{index}.py").write_text(f"import os\nX = {index}\n")
    extension = built_fixtures("clean")
    shutil.copy(extension, tmp_path / extension.name)
    stderr = io.StringIO()            # not a terminal: the plain-text fallback
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(scan_module, "PROGRESS_INTERVAL_S", 0.0)   # a line per step, not every 5 s
    report = scan_module.scan_paths([tmp_path], Config(), progress=None)
    counts = [int(m.group(1)) for m in re.finditer(r"^scanning: (\d+)/31 ", stderr.getvalue(), re.M)]
    assert counts == sorted(counts) and counts[-1] == 31
    assert len(counts) >= 4 and counts[0] < 30    # lines while the Python files were still running
    assert {r.kind.value for r in report.files} >= {"python", "extension"}


def test_progress_off_prints_nothing(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(scan_module, "PROGRESS_INTERVAL_S", 0.0)
    scan_module.scan_paths([tmp_path], Config(), progress=False)
    assert stderr.getvalue() == ""
