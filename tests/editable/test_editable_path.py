"""The user's whole path on detectron2-style code (issue 24): a C++ torch extension (pybind11
module that also registers TORCH_LIBRARY ops) installed editable with setuptools' finder, the
checkout beside model.py, and a model that picks a plugin package by name.

Everything is real: fixtures/editable.py builds the venv and the editable install with pip
(torch.utils.cpp_extension compiles maskpkg._C), and each command runs as the user runs it,
`python -m interpkit ...` with the venv's Python in the folder that holds model.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from fixtures.editable import build_editable_checkout

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.torch, pytest.mark.integration]


@pytest.fixture(scope="module")
def checkout():
    return build_editable_checkout()


def interpkit(checkout, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([str(checkout.python), "-m", "interpkit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=checkout.folder, env=env)


@pytest.fixture(scope="module")
def traced_scan(checkout):
    """`interpkit scan --trace model.py:build` as the README writes it (no separate PATH)."""
    done = interpkit(checkout, "scan", "--trace", "model.py:build", "--format", "json", "--exit-zero")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_python_imports_the_checkout_through_the_editable_finder(checkout):
    """The layout under test: the venv has setuptools' finder (no .pth naming the checkout), and
    from the model's folder `maskpkg` itself is the checkout folder as a namespace package while
    its modules come through the finder."""
    site = next(checkout.python.parent.parent.glob("lib/python*/site-packages"))
    assert list(site.glob("__editable___maskpkg_*_finder.py"))
    done = subprocess.run([str(checkout.python), "-c", "import maskpkg.layers, maskpkg._C; print(maskpkg._C.__file__)"],
                          capture_output=True, text=True, cwd=checkout.folder, timeout=300)
    assert done.returncode == 0 and Path(done.stdout.strip()) == checkout.extension, done.stderr


def test_scan_reaches_the_extension_and_the_plan_externs_installed_code(checkout, traced_scan):
    paths = {Path(f["path"]).resolve() for f in traced_scan["files"]}
    assert checkout.extension.resolve() in paths        # (1) found through the finder, not "missing"
    plan = traced_scan["packaging_plan"]
    # (6) the checkout beside model.py is the installed package, not the model's own code
    assert plan["intern"] == ["model"]
    assert {"maskpkg", "maskpkg.**", "sys", "io"} <= set(plan["extern"])      # (4) sys extern'ed
    assert not [m for m in plan["mock"] if m.startswith("maskpkg")]
    # (2) the plugin package only the trace saw loaded is planned, as the installed code it is
    assert {"maskpkg_plugins", "maskpkg_plugins.**"} <= set(plan["extern"])
    assert plan["reasons"]["maskpkg_plugins"] == "installed distribution maskpkg 0.1 (editable)"
    # (3) the export check pickled the model itself with the plan, and loaded it back
    check = plan["export_check"]
    assert check["ok"] and check["loads"], check.get("reason")
    assert check["model"] == "model:build" and check["model_type"] == "model.TinyMaskRCNN"
    assert traced_scan["trace"][0]["ok"]


def test_export_with_the_plan_then_run_in_two_interpreters(checkout, traced_scan, tmp_path):
    """The plan as printed exports the real model (atomically) and `run -n 2` answers as one interpreter does."""
    plan = traced_scan["packaging_plan"]
    archive = tmp_path / "maskrcnn.pt"
    script = ("import json, sys\nfrom interpkit.serve.server import export_model\nimport model\n"
              "plan = json.loads(sys.argv[2])\n"
              "export_model(sys.argv[1], model.build(), model.example(), intern=plan['intern'], "
              "extern=plan['extern'], mock=plan['mock'])\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([str(checkout.python), "-c", script, str(archive), json.dumps(plan)], capture_output=True,
                          text=True, cwd=checkout.folder, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = interpkit(checkout, "run", str(archive), "-n", "2", "-k", "16", "--format", "json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(ran.stdout)
    assert report["check"]["equal"] is True, report["check"]


def test_verify_calls_the_ops_the_pybind11_module_registers(checkout):
    """(10) maskpkg._C is a pybind11 module and a TORCH_LIBRARY op library: the probe imports it
    after torch and calls one of its torch.ops.maskrcnn_ops operators in every interpreter."""
    done = interpkit(checkout, "verify", str(checkout.extension), "-n", "2", "--format", "json", "--exit-zero")
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = json.loads(done.stdout)["results"]
    assert row["module"] == "maskpkg._C" and row["status"] == "ok", row
    calls = [step["op_library"]["call"] for step in row["outcome"]["steps"]
             if step.get("step") == "import" and step.get("op_library")]
    assert len(calls) == 2 and all(call["op"] and call["op"].startswith("maskrcnn_ops::") for call in calls), calls


def test_memory_import_of_the_editable_package(checkout):
    """(1) `memory --import` resolves the package as `import` does (through the finder): the
    measurement imports it in 1 and 2 interpreters, and the estimate reaches its extension,
    through the imports or (--no-follow-imports) inside the package."""
    done = interpkit(checkout, "memory", "--import", "maskpkg.layers", "-n", "1,2", "--backend", "namespaces",
                     "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert [(row["interpreters"], row["error"]) for row in report["rows"]] == [(1, None), (2, None)]
    objects = {Path(o["path"]) for o in report["estimate"]["objects"]}
    assert checkout.extension.resolve() in objects
    done = interpkit(checkout, "memory", "--import", "maskpkg", "--no-follow-imports", "--estimate-only",
                     "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert checkout.extension.resolve() in {Path(o["path"]) for o in json.loads(done.stdout)["estimate"]["objects"]}



def test_an_edit_in_the_checkout_is_seen_and_a_bare_namespace_is_extern(tmp_path):
    """The CLI keeps whole reports keyed by the scanned files and the sys.path folders; an
    editable install's code lives in its checkout, which no sys.path folder shows changing, so
    a scan after an edit there must not be answered from the cache. (A pure-Python editable
    install of its own: the shared fixture is never edited.)"""
    import sys

    checkout = tmp_path / "work" / "plainpkg"
    (checkout / "plainpkg").mkdir(parents=True)
    (checkout / "extra").mkdir()
    (checkout / "setup.py").write_text(
        "from setuptools import setup\nsetup(name='plainpkg', version='0.1', packages=['plainpkg', "
        "'plainpkg.extra'], package_dir={'plainpkg.extra': 'extra'})\n")
    (checkout / "plainpkg" / "__init__.py").write_text("from plainpkg import helpers\n")
    helpers = checkout / "plainpkg" / "helpers.py"
    helpers.write_text("VALUE = 1\n")
    (checkout / "extra" / "__init__.py").write_text("")
    # beside the checkout, `plainpkg` itself is the checkout's root as a namespace package and
    # plainpkg.helpers comes through the finder (docs/facts.md fact 12)
    (tmp_path / "work" / "model.py").write_text("import plainpkg.helpers\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--use-pep517", "-e", str(checkout)], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), INTERPKIT_CACHE_DIR=str(tmp_path / "cache"))

    def codes() -> set[str]:
        done = subprocess.run([str(python), "-m", "interpkit", "scan", "model.py", "--third-party-source",
                               "--format", "json", "--exit-zero", "--no-closure"], capture_output=True, text=True,
                              cwd=tmp_path / "work", env=env, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        return {f["code"] for fr in json.loads(done.stdout)["files"] if Path(fr["path"]).name == "helpers.py"
                for f in fr["findings"]}

    assert "IK404" not in codes()
    time.sleep(0.01)   # a new mtime on file systems with coarse timestamps
    helpers.write_text("import subprocess\n\nVALUE = subprocess.run(['true']).returncode\n")
    assert "IK404" in codes()
    # `import plainpkg` alone imports only that namespace package, which has no file to intern
    (tmp_path / "work" / "model.py").write_text("import plainpkg\n")
    done = subprocess.run([str(python), "-m", "interpkit", "scan", "model.py", "--format", "json", "--exit-zero"],
                          capture_output=True, text=True, cwd=tmp_path / "work", env=env, timeout=900)
    plan = json.loads(done.stdout)["packaging_plan"]
    assert plan["reasons"]["plainpkg"] == "namespace package without modules of its own"
    assert {"plainpkg", "plainpkg.**"} <= set(plan["extern"]) and plan["export_check"]["ok"], plan["export_check"]
