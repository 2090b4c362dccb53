"""Third-party Python source is rule-scanned only on request; the model's own files always are."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _scan(project: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "interpkit", "scan", "--format", "json", str(project / "model"), *extra],
                          capture_output=True, text=True, timeout=300, cwd=project)
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def _codes_by_file(report: dict) -> dict[str, set[str]]:
    return {Path(f["path"]).name: {x["code"] for x in f["findings"]} for f in report["files"]}


def test_third_party_source_is_scanned_only_with_the_flag(tmp_path):
    site = tmp_path / "site" / "thirdpkg"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("import atexit\n\natexit.register(print)\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "main.py").write_text("import thirdpkg\nimport os\n\nos.chdir('/')\n")
    (tmp_path / "pyproject.toml").write_text('[tool.interpkit]\npython-paths = ["site"]\nselect = ["IK4"]\n')

    default = _codes_by_file(_scan(tmp_path, "--config", str(tmp_path / "pyproject.toml")))
    assert default == {"main.py": {"IK406"}}

    deep = _scan(tmp_path, "--config", str(tmp_path / "pyproject.toml"), "--third-party-source")
    assert _codes_by_file(deep) == {"main.py": {"IK406"}, "__init__.py": {"IK405"}}
    [third] = [f for f in deep["files"] if f["path"].endswith("__init__.py")]
    assert third["findings"][0]["chain"] == ["main", "thirdpkg"]
