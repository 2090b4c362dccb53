"""Our own runtime extensions pass our own IK102: built for 3.12/3.13, both the namespaces binding
(_interpkit) and the copies binding (_copies) declare per-interpreter GIL support.

They are compiled here from setup.py's sources (each binding, its runtime and the shared worker
core in native/core/) against that Python's headers, then read by the ELF analyzer.
"""
from __future__ import annotations

import subprocess

import pytest

from fixtures.build import python_config
from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from tests.runtime.runtime_helpers import REPO_ROOT

NATIVE = REPO_ROOT / "native"
CORE = ["core/worker.c", "core/binding.c"]
EXTENSIONS = {
    "_interpkit": (["namespaces/_interpkit.c", "namespaces/runtime.c", *CORE], ["core", "namespaces/include"]),
    "_copies": (["copies/_copies.c", *CORE], ["core"]),
}


@pytest.mark.parametrize("version", ["3.12", "3.13"])
@pytest.mark.parametrize("name", sorted(EXTENSIONS))
def test_runtime_extension_declares_per_interpreter_gil_support(name, version, python_for, tmp_path):
    config = python_config(python_for(version))
    sources, includes = EXTENSIONS[name]
    output = tmp_path / f"{name}{config['ext_suffix']}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-std=gnu11", "-fvisibility=hidden", "-D_GNU_SOURCE",
                    "-I", config["include"], *(f"-I{NATIVE / folder}" for folder in includes),
                    *(str(NATIVE / source) for source in sources), "-o", str(output), "-ldl", "-lpthread"],
                   check=True, capture_output=True, timeout=300)
    [result] = [r for r in analyze_elf_files([output], Config(), closure=False) if r.path == output]
    [init] = result.facts["init"]
    assert (init["kind"], init["multiple_interpreters"]) == ("multi-phase", "per-interpreter-gil-supported")
    assert "IK102" not in {finding.code for finding in result.findings}
