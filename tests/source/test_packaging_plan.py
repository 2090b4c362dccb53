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
from interpkit.analyzer.source.packaging import ModelObject, PackagingPlan, check_export, plan_packaging

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


def test_a_namespace_package_of_an_installed_distribution_is_extern(tmp_path):
    """Issue 24 (5): a namespace package (google from protobuf, here mpl_toolkits from the
    installed matplotlib) has no file of its own; its modules say which distribution put it
    there, so it is extern'ed, never interned as "pure Python"."""
    import matplotlib

    model = tmp_path / "plots.py"
    model.write_text("from mpl_toolkits.mplot3d import axes3d\n")
    graph = build_import_graph([model], Config())
    assert graph.nodes["mpl_toolkits"].path is None    # the namespace node itself
    plan = plan_packaging(graph)
    assert {"mpl_toolkits", "mpl_toolkits.**"} <= set(plan.extern) and "mpl_toolkits" not in plan.intern
    assert plan.reasons["mpl_toolkits"] == f"installed distribution matplotlib {matplotlib.__version__}"


def _model_using(tmp_path, library_body: str, model_body: str):
    site = tmp_path / "site" / "site-packages"
    (site / "fancylib").mkdir(parents=True)
    (site / "fancylib" / "__init__.py").write_text(library_body)
    info = site / "fancylib-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fancylib\nVersion: 1.0\n")
    model = tmp_path / "model" / "net.py"
    model.parent.mkdir()
    model.write_text(model_body)
    return model, site


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_a_model_module_that_uses_sys_and_io_exports(tmp_path):
    """Issue 24 (4): torch.package asks for extern('sys') (it externs the rest of the standard
    library by itself), so an interned module that imports sys or io must find them extern'ed."""
    model, site = _model_using(tmp_path, "", (
        "import io\nimport sys\n\nimport torch\n\n\nclass Net(torch.nn.Module):\n"
        "    def forward(self, x):\n        return x * len(sys.byteorder) + len(io.StringIO('ab').read())\n\n\n"
        "def build():\n    return Net()\n"))
    graph = build_import_graph([model], Config())
    plan = plan_packaging(graph, model=ModelObject("net", "build"))
    assert {"sys", "io"} <= set(plan.extern) and plan.intern == ["net"]
    check = check_export(plan)
    assert check["ok"] and check["loads"], check.get("reason")
    assert check["model_type"] == "net.Net"


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_the_export_check_pickles_the_model_so_mocking_its_library_fails(tmp_path):
    """Issue 24 (3): a plan that mocks the library the model's objects come from exports the
    model's module and imports it back, but cannot package the model: with the entry point
    given, the check pickles what it returns, and fails as the user's export would."""
    model, site = _model_using(tmp_path, (
        "import torch\n\n\nclass Layer(torch.nn.Module):\n    def forward(self, x):\n        return x + 1\n"),
        "import torch\nimport fancylib\n\n\ndef build():\n    return torch.nn.Sequential(fancylib.Layer())\n")
    base = dict(extern=["torch", "torch.**"], mock=["fancylib", "fancylib.**"], intern=["net"],
                save_modules=["net"], search_path=[str(model.parent), str(site)])
    module_only = check_export(PackagingPlan(**base))
    assert module_only["ok"] and module_only["loads"]          # what the check used to call "export ok"
    with_model = check_export(PackagingPlan(**base, model=ModelObject("net", "build")))
    assert with_model["ok"] is False and "was mocked out during packaging" in with_model["reason"]
    assert with_model["model_type"] == "torch.nn.modules.container.Sequential"
    # the plan the scan makes for it externs the installed library, and the model packages
    graph = build_import_graph([model], Config(python_paths=(str(site),)))
    planned = check_export(plan_packaging(graph, model=ModelObject("net", "build")))
    assert planned["ok"] and planned["loads"], planned.get("reason")

