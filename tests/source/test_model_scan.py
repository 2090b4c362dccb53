"""The pre-packaging scan: import graph, extension chains, packaging plan, real export, .pt archives."""
from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.core.findings import FileKind
from interpkit.analyzer.source.api import scan_model, scan_package_archive
from interpkit.analyzer.source.imports import ModuleKind, build_import_graph
from interpkit.analyzer.source.packaging import plan_packaging

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"
HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPKIT_CACHE_DIR", str(tmp_path / "cache"))


def test_import_graph_of_clean_model_without_following_installed_packages():
    graph = build_import_graph([MODELS / "clean" / "tinynet"], Config(follow_imports=False))
    assert graph.roots == ["tinynet"]
    local = sorted(n.name for n in graph.nodes.values() if n.local)
    assert local == ["tinynet", "tinynet.layers", "tinynet.model"]
    assert graph.nodes["math"].kind is ModuleKind.STDLIB
    assert graph.chain_to("tinynet.layers") == ("tinynet", "tinynet.model", "tinynet.layers")


def test_packaging_plan_for_clean_model():
    plan = plan_packaging(build_import_graph([MODELS / "clean" / "tinynet"], Config(follow_imports=False)))
    assert plan.intern == ["tinynet", "tinynet.**"]
    assert "math" in plan.extern
    if HAS_TORCH:
        assert {"torch", "torch.**"} <= set(plan.extern)
    assert plan.mock == []
    snippet = plan.snippet()
    compile(snippet, "<snippet>", "exec")
    assert "exporter.intern(['tinynet', 'tinynet.**'])" in snippet
    assert "exporter.save_module('tinynet')" in snippet


def test_missing_and_type_checking_imports_are_mocked(tmp_path):
    model = tmp_path / "m.py"
    model.write_text("from typing import TYPE_CHECKING\ntry:\n    import not_installed_anywhere_xyz\n"
                     "except ImportError:\n    pass\nif TYPE_CHECKING:\n    import rich\n")
    plan = plan_packaging(build_import_graph([model], Config(follow_imports=False)))
    assert "not_installed_anywhere_xyz" in plan.mock and "rich" in plan.mock
    assert plan.intern == ["m"]


def test_ext_user_reaches_fixture_extensions_with_chains(built_fixtures):
    clean = built_fixtures("clean")
    single = built_fixtures("single_phase_static")
    config = Config(python_paths=(str(clean.parent), str(single.parent)))
    files, extras = scan_model([MODELS / "ext_user" / "uses_ext.py"], config,
                               elf_analyzer=analyze_elf_files, export_check=False)
    by_module = {f.module: f for f in files if f.kind is FileKind.EXTENSION}
    assert {"clean", "single_phase_static"} <= set(by_module)
    single_result = by_module["single_phase_static"]
    assert single_result.findings, "the single-phase fixture must have ELF findings"
    for finding in single_result.findings:
        assert finding.chain == ("uses_ext", "single_phase_static")
    plan = extras["packaging_plan"]
    assert "clean" in plan["extern"] and "single_phase_static" in plan["extern"]
    assert plan["intern"] == ["uses_ext"]
    assert extras["imports"]["counts"]["extension"] >= 2


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_maskrcnn_like_reaches_the_custom_op_extension(built_fixtures):
    ops = built_fixtures("maskrcnn_ops")
    config = Config(follow_imports=False, python_paths=(str(ops.parent),))
    files, extras = scan_model([MODELS / "maskrcnn_like" / "maskrcnn_like"], config,
                               elf_analyzer=analyze_elf_files, export_check=True)
    ext = [f for f in files if f.module == "maskrcnn_ops"]
    assert len(ext) == 1 and ext[0].kind is FileKind.EXTENSION
    model_chain = ("maskrcnn_like", "maskrcnn_like.model", "maskrcnn_like.ops", "maskrcnn_ops")
    assert tuple(ext[0].facts["chain"]) == model_chain
    assert ext[0].findings and all(f.chain == model_chain for f in ext[0].findings)
    # libraries of the extension's DT_NEEDED closure carry the chain through the extension
    libraries = [f for f in files if f.kind is FileKind.LIBRARY]
    assert libraries
    for library in libraries:
        assert tuple(library.facts["chain"][:4]) == model_chain
        assert library.facts["chain"][-1] == Path(library.path).name
    plan = extras["packaging_plan"]
    assert "maskrcnn_ops" in plan["extern"] and plan["intern"] == ["maskrcnn_like", "maskrcnn_like.**"]
    check = plan["export_check"]
    assert check["ok"] and check["loads"], check
    assert "maskrcnn_ops" in check["loaded_modules"]


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_clean_model_exports_with_torch_package_and_loads_back():
    files, extras = scan_model([MODELS / "clean" / "tinynet"], Config(follow_imports=False), elf_analyzer=None)
    assert [f for r in files for f in r.findings] == []
    check = extras["packaging_plan"]["export_check"]
    assert check["ran"] and check["ok"] and check["loads"], check
    assert {"tinynet", "tinynet.model", "tinynet.layers"} <= set(check["loaded_modules"])


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_scan_of_real_package_archive(tmp_path):
    from torch.package import PackageExporter

    import sys
    sys.path.insert(0, str(MODELS / "hazards"))
    try:
        archive = tmp_path / "hazard.pt"
        with PackageExporter(str(archive)) as exporter:
            exporter.extern(["os", "os.**", "pathlib"])
            exporter.intern(["IK501"])
            exporter.save_module("IK501")
    finally:
        sys.path.remove(str(MODELS / "hazards"))
    files, extras = scan_package_archive(archive, Config())
    assert files[0].kind is FileKind.ARCHIVE
    [source] = [f for f in files if f.module == "IK501"]
    assert [(f.code, f.line) for f in source.findings] == [("IK501", 4), ("IK501", 5)]
    assert str(source.path).endswith("!hazard/IK501.py")
    assert "os" in extras["extern_modules"]


@pytest.mark.parametrize("name,why", [("../evil.py", "escapes"), ("/abs.py", "absolute"), ("dup.py", "duplicate")])
def test_hostile_archive_is_one_line_error(tmp_path, name, why):
    archive = tmp_path / "bad.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("bad/.data/version", "6\n")
        zf.writestr(name, "x = 1\n")
        if why == "duplicate":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zf.writestr(name, "x = 2\n")
    files, extras = scan_package_archive(archive, Config())
    assert len(files) == 1 and files[0].kind is FileKind.ERROR
    assert why in files[0].error and "\n" not in files[0].error
    assert not (tmp_path / "evil.py").exists()


def test_not_a_zip_is_one_line_error(tmp_path):
    archive = tmp_path / "junk.pt"
    archive.write_bytes(b"not a zip at all")
    [result], _ = scan_package_archive(archive, Config())
    assert result.kind is FileKind.ERROR and result.error.startswith("cannot read")
