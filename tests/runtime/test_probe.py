"""The sandboxed namespaces probe: ok, import error, crash and hang, and no orphans."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from interpkit.native.sandbox.outcome import STATUSES
from interpkit.native.sandbox.probe import probe_module
from tests.runtime.runtime_helpers import REPO_ROOT

STEPS_OK = ["create", "import", "import", "smoke", "smoke", "shared_state", "destroy",
            "use_after_destroy", "close"]


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_modules")
    (root / "ik_fine.py").write_text("VALUE = [1, 2]\ndef f():\n    return 3\n")
    (root / "ik_crashy.py").write_text("import ctypes\nctypes.string_at(0)\n")
    # Leaves the pid of the process that imports it, so the test can look for it afterwards.
    (root / "ik_hangy.py").write_text("import os, pathlib\n"
                                      "pathlib.Path(__file__).with_suffix('.pid').write_text(str(os.getpid()))\n"
                                      "while True:\n    pass\n")
    (root / "ik_broken.py").write_text("raise ImportError('needs libfoo')\n")
    return root


def test_ok_module_goes_through_every_step(modules):
    outcome = probe_module("ik_fine", modules, interpreters=2, timeout=120)
    assert outcome.status == "ok", outcome
    assert [step["step"] for step in outcome.steps] == STEPS_OK
    assert outcome.shared_state == ()
    assert all(step["ok"] for step in outcome.steps)
    assert outcome.to_json()["status"] in STATUSES


def test_c_extension_with_four_interpreters(modules):
    outcome = probe_module("_decimal", None, interpreters=4, timeout=120)
    assert outcome.status == "ok", outcome
    imports = [s for s in outcome.steps if s["step"] == "import"]
    assert len(imports) == 4 and all("lib-dynload" in s["file"] for s in imports)


def test_import_error_is_reported_with_its_message(modules):
    outcome = probe_module("ik_broken", modules, interpreters=2, timeout=120)
    assert outcome.status == "import_error"
    assert outcome.message == "ImportError: needs libfoo"


def test_crash_is_a_signal_pinned_on_its_step(modules):
    outcome = probe_module("ik_crashy", modules, interpreters=2, timeout=120)
    assert outcome.status == "crash"
    assert outcome.signal == "SIGSEGV"
    assert "during import in interpreter 0" in outcome.message


def test_hang_is_killed_with_its_process_group(modules):
    outcome = probe_module("ik_hangy", modules, interpreters=2, timeout=8)
    assert outcome.status == "hang"
    assert "during import" in outcome.message
    # The child that hung (its job goes on stdin, so its pid is how to find it) is gone.
    pid = int((modules / "ik_hangy.pid").read_text())
    assert not os.path.exists(f"/proc/{pid}")


def test_command_line_prints_one_json_object(modules):
    result = subprocess.run(
        [sys.executable, "-m", "interpkit.native.sandbox.probe", "--backend", "namespaces", "--interpreters", "2",
         "--module", "ik_fine", "--path", str(modules), "--timeout", "120"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"status", "message", "signal", "steps", "shared_state"}
    assert data["status"] == "ok"


def test_preimport_runs_first_in_every_interpreter(modules):
    outcome = probe_module("ik_fine", modules, interpreters=2, timeout=120,
                           preimport=("decimal",))
    assert outcome.status == "ok"
    assert outcome.steps[1] == {"step": "preimport", "module": "decimal", "automatic": False,
                                "ok": True}


def test_preimport_that_fails_is_an_error(modules):
    outcome = probe_module("ik_fine", modules, interpreters=2, timeout=120,
                           preimport=("no_such_module_xyz",))
    assert outcome.status == "error"
    assert outcome.message.startswith("cannot import no_such_module_xyz first")
