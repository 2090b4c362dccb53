"""Scanning the installed torch package: finishes, and reports the hazards torch is known to carry."""
from __future__ import annotations

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.core.findings import FileKind

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def test_torch_lib_dir(torch_dir):
    paths = sorted(p for p in (torch_dir / "lib").iterdir() if p.is_file() and ".so" in p.name)
    results = analyze_elf_files(paths, Config())
    by_name = {r.path.name: r for r in results}
    assert not [r for r in results if r.kind is FileKind.ERROR]
    codes = {name: {f.code for f in r.findings} for name, r in by_name.items()}
    assert "IK206" in codes["libtorch_cpu.so"]          # STB_GNU_UNIQUE from C++ inline statics
    assert "IK206" in codes["libtorch_python.so"]
    assert "IK207" in codes["libgomp.so.1"]             # initial-exec TLS
    assert by_name["libgomp.so.1"].facts["tls"]["static"] is True
    assert "IK307" in codes["libtorch_python.so"]       # pybind11
    assert by_name["libtorch_python.so"].facts["generator"] == "pybind11"
    assert "IK203" in codes["libtorch_python.so"]       # PyGILState_*


def test_torch_c_extension(torch_dir):
    [ext] = [p for p in torch_dir.glob("_C.*.so")]
    results = analyze_elf_files([ext], Config())
    assert results[0].kind is FileKind.EXTENSION and results[0].module == "torch._C"
    # its closure brings libtorch_python.so (pybind11) and libgomp (static TLS) in once each
    names = [r.path.name for r in results[1:]]
    assert "libtorch_python.so" in names and "libgomp.so.1" in names and len(names) == len(set(names))
