"""The torch.package plan: installed distributions extern, the model's own code intern, the real
export check's reason, and a failed check in the summary and the exit status."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.source.imports import build_import_graph
from interpkit.analyzer.source.packaging import PackagingPlan, check_export, plan_packaging

HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_installed_distributions_are_extern_and_the_models_own_code_intern(tmp_path):
    site = tmp_path / "env" / "site-packages"
    (site / "fancylib").mkdir(parents=True)
    (site / "fancylib" / "__init__.py").write_text("from fancylib import util\n")
    (site / "fancylib" / "util.py").write_text("VALUE = 1\n")
    info = site / "fancy_lib-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fancy-lib\nVersion: 1.2\n")
    (info / "top_level.txt").write_text("fancylib\n")
    plain = tmp_path / "src" / "helpers"      # on a --python-path folder, not installed
    plain.mkdir(parents=True)
    (plain / "__init__.py").write_text("")
    model = tmp_path / "model" / "net.py"
    model.parent.mkdir()
    (model.parent / "layers.py").write_text("import fancylib\n")
    model.write_text("import layers\nimport helpers\nimport fancylib.util\n")
    graph = build_import_graph([model], Config(python_paths=(str(site), str(plain.parent))))
    plan = plan_packaging(graph)
    assert {"fancylib", "fancylib.**"} <= set(plan.extern)
    assert plan.reasons["fancylib"] == "installed distribution fancy-lib 1.2"
    assert plan.intern == ["helpers", "helpers.**", "layers", "net"]
    assert plan.reasons["layers"] == "the model's own code"


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_export_check_shows_the_packaging_errors_real_reason(tmp_path):
    (tmp_path / "unplanned_dep.py").write_text("VALUE = 1\n")
    (tmp_path / "needs_dep.py").write_text("import unplanned_dep\n")
    plan = PackagingPlan(intern=["needs_dep"], save_modules=["needs_dep"], search_path=[str(tmp_path)])
    check = check_export(plan)
    assert check["ran"] and check["ok"] is False
    # PackagingError's own first line is empty; the reason is what it lists below it.
    assert check["reason"].startswith("PackagingError: ")
    assert "did not match against any action pattern" in check["reason"] and "unplanned_dep" in check["reason"]


@pytest.mark.integration
@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_a_failed_export_check_is_in_the_summary_and_sets_the_exit_status(tmp_path):
    model = tmp_path / "raises_on_import.py"
    model.write_text("raise RuntimeError('weights missing')\n")
    done = subprocess.run([sys.executable, "-m", "interpkit", "scan", str(model)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "export check failed" in done.stdout.splitlines()[-1]
    assert "weights missing" in done.stdout
    as_json = subprocess.run([sys.executable, "-m", "interpkit", "scan", str(model), "--format", "json"],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert as_json.returncode == 1
    check = json.loads(as_json.stdout)["packaging_plan"]["export_check"]
    assert check["ran"] and not (check["ok"] and check["loads"])
