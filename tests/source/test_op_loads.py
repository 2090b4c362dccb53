"""torch.ops.load_library paths followed statically through helper functions and modules, the
way packages build them (a generic package laid out like a detection library; no names known)."""
from __future__ import annotations

import importlib.machinery
import shutil
from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.analyzer.source.api import scan_model
from interpkit.analyzer.source.imports import build_import_graph
from interpkit.core.findings import Backend, FileKind, Severity, Verdict

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]

# A package that finds its op libraries beside itself with FileFinder in one module, loads them
# through a helper taking the library's name in another, and calls that helper from a third.
HELPERS = '''import importlib.machinery
import os


def _library_path(lib_name):
    lib_dir = os.path.dirname(__file__)
    loader_details = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    extfinder = importlib.machinery.FileFinder(lib_dir, loader_details)
    ext_specs = extfinder.find_spec(lib_name)
    if ext_specs is None:
        raise ImportError(lib_name)
    return ext_specs.origin
'''
LOADER = '''import torch

from ._paths import _library_path


def _load(lib_name):
    try:
        lib_path = _library_path(lib_name)
        torch.ops.load_library(lib_path)
        return True
    except (ImportError, OSError):
        return False


HAS_OPS = _load("_ops")
'''
IO = '''from ..loader import _load

HAS_IO = _load("io_ops")
'''
PATHLIB = '''from pathlib import Path

import torch as T

LIB_DIR = Path(__file__).parent / "lib"
T.classes.load_library(str(LIB_DIR / f"libclasses{'.so'}"))
'''


def make_package(site: Path, present: dict[str, Path]) -> Path:
    pkg = site / "detlib"
    (pkg / "io").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import loader, io, classes\n")
    (pkg / "_paths.py").write_text(HELPERS)
    (pkg / "loader.py").write_text(LOADER)
    (pkg / "io" / "__init__.py").write_text(IO)
    (pkg / "classes.py").write_text(PATHLIB)
    for name, binary in present.items():
        shutil.copyfile(binary, pkg / name)
    return pkg


@pytest.fixture(scope="module")
def detlib(tmp_path_factory, built_fixtures):
    """An installed package (under a site-packages folder) and a model that imports it, scanned once."""
    root = tmp_path_factory.mktemp("detlib")
    site = root / "site-packages"
    pkg = make_package(site, {f"_ops{SUFFIX}": built_fixtures("maskrcnn_oplib")})
    model = root / "model" / "model.py"
    model.parent.mkdir()
    model.write_text("import detlib\n")
    files, extras = scan_model([model], Config(python_paths=(str(site),)), elf_analyzer=analyze_elf_files,
                               export_check=False)
    loads = {load["module"]: load for load in extras["imports"]["op_libraries"]}
    return pkg, files, extras, loads


def test_loads_through_helpers_in_other_modules_are_followed(detlib):
    pkg, _, _, loads = detlib
    assert set(loads) == {"detlib.loader", "detlib.io", "detlib.classes"}
    ops = loads["detlib.loader"]
    assert ops["path"] == str(pkg / f"_ops{SUFFIX}") and ops["exists"] and ops["at_import"]
    assert ops["call"] == "torch.ops.load_library" and ops["expression"] == "_load('_ops')"
    io = loads["detlib.io"]   # FileFinder finds nothing: the file it would have wanted, missing
    assert Path(io["path"]).parent == pkg and Path(io["path"]).name.startswith("io_ops") and not io["exists"]
    classes = loads["detlib.classes"]
    assert classes["call"] == "torch.classes.load_library"
    assert classes["path"] == str(pkg / "lib" / "libclasses.so") and not classes["exists"]


def test_a_helper_nobody_calls_with_a_known_name_is_not_a_load(tmp_path):
    (tmp_path / "wrap.py").write_text("import torch\n\n\ndef load(path):\n    torch.ops.load_library(path)\n")
    model = tmp_path / "m.py"
    model.write_text("import wrap\nimport sys\nwrap.load(sys.argv[1])\n")
    assert build_import_graph([model], Config(follow_imports=False)).op_libraries == []


@pytest.mark.torch
def test_model_scan_reaches_the_op_library_and_reports_the_missing_ones(detlib, torch_dir):
    pkg, files, extras, _ = detlib
    by_path = {Path(f.path): f for f in files}
    library = by_path[pkg / f"_ops{SUFFIX}"]
    assert library.kind is FileKind.LIBRARY
    assert library.facts["loaded_by"] == {"module": "detlib.loader", "line": 15, "call": "torch.ops.load_library"}
    assert library.facts["chain"] == ["model", "detlib", "detlib.loader", f"_ops{SUFFIX}"]
    assert "IK208" in {f.code for f in library.findings}
    assert library.verdicts[Backend.COPIES] is Verdict.FAIL and library.verdicts[Backend.NAMESPACES] is Verdict.OK
    # its DT_NEEDED closure is resolved (torch's own libraries, scanned once in the whole report)
    assert library.facts["closure"]["libtorch_cpu.so"].endswith("torch/lib/libtorch_cpu.so")
    assert any(Path(f.path).name == "libtorch_cpu.so" for f in files)
    # the two loads that point at nothing: IK410 errors on the modules that make them, once each
    missing = sorted((Path(f.path).name, x.line) for f in files for x in f.findings if x.code == "IK410")
    assert missing == [("__init__.py", 3), ("classes.py", 6)]
    io = by_path[pkg / "io" / "__init__.py"]
    [finding] = io.findings
    assert finding.severity is Severity.ERROR and finding.chain == ("model", "detlib", "detlib.io")
    assert set(io.verdicts.values()) == {Verdict.FAIL}
    plan = extras["packaging_plan"]
    assert "detlib" in plan["extern"] and plan["reasons"]["detlib"] == f"loads an op library (_ops{SUFFIX})"
    assert plan["intern"] == ["model"]


@pytest.mark.torch
def test_maskrcnn_like_loads_its_op_library_beside_itself(tmp_path, built_fixtures, torch_dir):
    """The model fixture as shipped (no op library built beside it): IK410; with one there: reached."""
    ops = built_fixtures("maskrcnn_ops")
    config = Config(follow_imports=False, python_paths=(str(ops.parent),))
    files, _ = scan_model([MODELS / "maskrcnn_like" / "maskrcnn_like"], config, elf_analyzer=analyze_elf_files,
                          export_check=False)
    assert [(Path(f.path).name, x.code) for f in files for x in f.findings if x.code == "IK410"] == [("ops.py", "IK410")]

    copy = tmp_path / "maskrcnn_like"
    shutil.copytree(MODELS / "maskrcnn_like" / "maskrcnn_like", copy)
    oplib = built_fixtures("maskrcnn_oplib")
    shutil.copyfile(oplib, copy / oplib.name)
    files, extras = scan_model([copy], config, elf_analyzer=analyze_elf_files, export_check=False)
    assert not [x for f in files for x in f.findings if x.code == "IK410"]
    [library] = [f for f in files if Path(f.path) == copy / oplib.name]
    assert library.facts["op_library"]["namespaces"] == ["maskrcnn_oplib"]
    assert library.facts["chain"] == ["maskrcnn_like", "maskrcnn_like.model", "maskrcnn_like.ops", oplib.name]
    ext = [f for f in files if f.module == "maskrcnn_ops"]
    assert ext and "IK208" in {x.code for x in ext[0].findings}
