"""Guest code (native/guest/) runs inside interpreters and sandboxed children, some under other
Pythons where interpkit is not installed: of interpkit it imports other guest modules only (the
rest is the standard library, and the libraries a probed workload asks for, e.g. torch to load
an op library). The check reads the imports from the source (function-local ones included) and
is shown to catch a planted violation.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from tests.architecture.imports import FOLDERS, ROOT, import_edges, module_files

GUEST = "interpkit.native.guest"
# The package chain Python imports on the way to a guest module (each stays light: lazy exports).
ON_THE_WAY = {"interpkit", "interpkit.native", GUEST}


def guest_violations(root: Path = ROOT) -> list[str]:
    modules = module_files(root)
    guests = {name for name in modules if name == GUEST or name.startswith(GUEST + ".")}
    out = [f"{edge.importer}:{edge.line} imports {edge.imported}" for edge in import_edges(modules)
           if edge.importer in guests and edge.imported not in guests | ON_THE_WAY]
    return sorted(out)


def test_guest_code_imports_no_interpkit_code_but_guest_modules():
    assert guest_violations() == []


def test_a_planted_guest_import_is_caught(tmp_path):
    for folder in FOLDERS.values():
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    channel = tmp_path / "native" / "guest" / "channel.py"
    channel.write_text(channel.read_text() + "\n\ndef _planted():\n    from interpkit.native import limits\n"
                       "    return limits\n")
    found = guest_violations(tmp_path)
    assert any(v.startswith("interpkit.native.guest.channel:") and "interpkit.native.limits" in v for v in found), found
