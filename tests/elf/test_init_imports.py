"""IK105: an extension is only as loadable as the extension modules its init imports. Checked
against CPython 3.13's own isolated-interpreter import of the consumer."""
from __future__ import annotations

import shutil
import subprocess

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.core.findings import Backend, Verdict

_IMPORT_IN_ISOLATED = r"""
import _interpreters, sys
sys.path.insert(0, sys.argv[1])
interp = _interpreters.create("isolated")
err = _interpreters.exec(interp, f"import sys; sys.path.insert(0, {sys.argv[1]!r}); import {sys.argv[2]}")
print("ok" if err is None else "refused: " + err.msg)
"""


def _package(tmp_path, built_fixtures, python, names):
    package = tmp_path / "ikpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in names:
        built = built_fixtures(name, python)
        shutil.copy(built, package / built.name)
    return package


def _by_module(package):
    results = analyze_elf_files(sorted(package.glob("*.so")), Config(), closure=False)
    return {r.module: r for r in results}


def test_consumer_is_refused_because_of_what_it_imports(built_fixtures, python_for, tmp_path):
    python = python_for("3.13")
    package = _package(tmp_path, built_fixtures, python, ["init_import_provider", "init_import_consumer"])
    results = _by_module(package)
    consumer = results["ikpkg.init_import_consumer"]
    assert consumer.facts["init"][0]["multiple_interpreters"] == "per-interpreter-gil-supported"
    [finding] = [f for f in consumer.findings if f.code == "IK105"]
    assert finding.symbol == "ikpkg.init_import_provider"
    assert finding.message == ("imports ikpkg.init_import_provider while initialising: refused because "
                               "ikpkg.init_import_provider declares Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED")
    assert consumer.verdicts[Backend.SUBINTERPRETERS] is Verdict.FAIL
    # The provider is refused on its own account (IK102), not through IK105.
    assert "IK105" not in {f.code for f in results["ikpkg.init_import_provider"].findings}
    proc = subprocess.run([python, "-c", _IMPORT_IN_ISOLATED, str(tmp_path), "ikpkg.init_import_consumer"],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().startswith("refused"), proc.stdout + proc.stderr[-300:]
    assert "init_import_provider" in proc.stdout


def test_consumer_alone_is_judged_on_its_declaration(built_fixtures, python_for, tmp_path):
    """The imported module is resolved in the scanned tree only: scanned alone, nothing blocks."""
    python = python_for("3.13")
    package = _package(tmp_path, built_fixtures, python, ["init_import_consumer"])
    consumer = _by_module(package)["ikpkg.init_import_consumer"]
    assert "IK105" not in {f.code for f in consumer.findings}
    assert consumer.verdicts[Backend.SUBINTERPRETERS] is Verdict.OK
