"""What the commands print: concise lines, --quiet, tables that never break a path or symbol off a
terminal and that use the terminal's width on one, the packaging plan, .pt files, wheels in verify.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import termios
import zipfile
from pathlib import Path

import pytest


def interpkit(*args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "interpkit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def on_terminal(*args, columns: int) -> str:
    """Run the command with stdout on a pseudo-terminal `columns` wide; returns what it printed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "interpkit", *map(str, args)], stdout=slave, stderr=subprocess.PIPE,
                            env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=600)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # colours and cursor codes are not columns


@pytest.fixture()
def model(tmp_path) -> Path:
    """A model file with exactly one error (os.fork) and one warning (os.chdir)."""
    path = tmp_path / "model.py"
    path.write_text("import os\n\npid = os.fork()\nos.chdir('/')\n")
    return path


@pytest.fixture()
def deep_extension(tmp_path, built_fixtures) -> Path:
    """The GNU_UNIQUE fixture (long mangled symbols) at a path longer than any terminal."""
    folder = tmp_path.joinpath(*(["a_folder_name_long_enough_to_matter"] * 4))
    folder.mkdir(parents=True)
    return Path(shutil.copy2(built_fixtures("gnu_unique_cpp"), folder))


def scan_json(*args) -> dict:
    proc = interpkit("scan", "--format", "json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


# ------------------------------------------------------------------------------------- concise

def test_concise_is_one_line_per_source_finding_as_ruff_prints(model):
    data = scan_json("--no-follow-imports", model)
    findings = [f for entry in data["files"] for f in entry["findings"]]
    proc = interpkit("scan", "--output-format", "concise", "--no-follow-imports", model)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[:-1] == [f"{model}:{f['line']}:{f['column']}: {f['code']} {f['message']}"
                          for f in sorted(findings, key=lambda f: (f["line"], f["column"]))]
    assert lines[-1] == "Scanned 1 file: 1 error, 1 warning, 0 info"


def test_concise_elf_findings_name_the_symbol(deep_extension):
    data = scan_json("--no-closure", deep_extension)
    expected = {f"{entry['path']}: {f['code']} {f['message']}" + (f" [{f['symbol']}]" if f.get("symbol") else "")
                for entry in data["files"] for f in entry["findings"]}
    proc = interpkit("scan", "-f", "concise", "-q", "--no-closure", deep_extension)
    assert expected and set(proc.stdout.splitlines()) == expected
    assert any(line.endswith("[_ZGVZN18gnu_unique_fixture12call_counterEvE7counter]") for line in expected)


def test_concise_unreadable_input_is_one_error_line(tmp_path):
    fake = tmp_path / "fake.so"
    fake.write_text("text, not ELF\n")
    proc = interpkit("scan", "-f", "concise", "-q", fake)
    assert proc.returncode == 1
    [line] = proc.stdout.splitlines()
    assert line.startswith(f"{fake}: error: ")


# --------------------------------------------------------------------------------------- quiet

def test_quiet_prints_the_findings_only(model):
    loud = interpkit("scan", "--no-follow-imports", model).stdout
    quiet = interpkit("scan", "--no-follow-imports", "-q", model).stdout
    assert "Scanned 1 file" in loud and "Scanned" not in quiet
    assert "IK403" in quiet and "IK406" in quiet
    clean = model.parent / "clean.py"
    clean.write_text("x = 1\n")
    assert interpkit("scan", "-q", "--no-follow-imports", clean).stdout.strip() == ""


# --------------------------------------------------------------------------------------- width

def test_piped_table_never_breaks_a_path_or_symbol(deep_extension):
    data = scan_json("--no-closure", deep_extension)
    symbols = {f["symbol"] for entry in data["files"] for f in entry["findings"] if f.get("symbol")}
    proc = interpkit("scan", "--no-closure", deep_extension, env={**os.environ, "COLUMNS": "60"})
    lines = proc.stdout.splitlines()
    assert len(str(deep_extension)) > 150 and any(str(deep_extension) in line for line in lines)
    for symbol in symbols:
        assert any(symbol in line for line in lines), symbol
    assert not any(line != line.rstrip() for line in lines)  # no padding blanks at line ends


def test_terminal_table_uses_the_terminal_width(model):
    text = on_terminal("scan", "--no-follow-imports", model, columns=70)
    lines = [line for line in text.splitlines() if line.strip()]
    assert "IK403" in text and max(map(len, lines)) <= 70


def test_memory_table_obeys_the_terminal_width(tmp_path, built_fixtures):
    shutil.copy2(built_fixtures("clean"), tmp_path)
    for columns in (100, 200):
        text = on_terminal("memory", tmp_path, "--estimate-only", columns=columns)
        lines = [line for line in text.splitlines() if line.strip()]
        assert "Static estimate" in text and max(map(len, lines)) <= columns, columns
    piped = interpkit("memory", tmp_path, "--estimate-only").stdout
    assert "Pss total" in piped  # off a terminal the headings stay whole on one line


# ------------------------------------------------------------------------------ plan, plurals

def test_table_shows_the_packaging_plan(tmp_path):
    (tmp_path / "helpers.py").write_text("import json\n\n\ndef load(text):\n    return json.loads(text)\n")
    entry = tmp_path / "serve_model.py"
    entry.write_text("import helpers\n\n\ndef forward(x):\n    return helpers.load(x)\n")
    data = scan_json(entry)
    plan = data["packaging_plan"]
    proc = interpkit("scan", entry)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "torch.package plan" in lines
    for action in ("intern", "extern"):
        [row] = [line for line in lines if line.startswith(action + " ")]
        patterns = [p for p in plan[action] if not p.endswith(".**")]
        assert f" {len(patterns)} " in row and all(p in row for p in patterns), row
    assert any(line.startswith("export check: ") for line in lines)


def test_plural_summary_words(tmp_path, built_fixtures):
    shutil.copy2(built_fixtures("clean"), tmp_path)
    summary = interpkit("patch", tmp_path, "--dry-run").stdout.splitlines()[-1]
    assert re.fullmatch(r"1 input, 1 file: 0 findings fixed, 1 unfixed, 0 edits planned", summary), summary


def test_patch_format_option_has_help_text():
    text = interpkit("patch", "--help").stdout
    assert re.search(r"--format \{table,json\}.*\n\s+.*table: per file", text), text


# ---------------------------------------------------------------------------------- .pt files

def _torch_files(folder: Path) -> dict[str, Path]:
    import warnings

    import torch

    files = {"torchscript": folder / "scripted.pt", "state_dict": folder / "weights.pt",
             "legacy": folder / "legacy.pt"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, and still in the wild
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(files["torchscript"]))
    torch.save(torch.nn.Linear(2, 2).state_dict(), files["state_dict"])
    torch.save({"w": torch.zeros(2)}, files["legacy"], _use_new_zipfile_serialization=False)
    return files


def test_torchscript_and_state_dict_files_are_info_not_errors(tmp_path):
    files = _torch_files(tmp_path)
    data = scan_json(tmp_path)
    by_name = {Path(entry["path"]).name: entry for entry in data["files"]}
    assert set(by_name) == {p.name for p in files.values()}
    expected = {"scripted.pt": "TorchScript", "weights.pt": "torch.save", "legacy.pt": "legacy pickle"}
    for name, word in expected.items():
        entry = by_name[name]
        assert entry["kind"] == "archive" and word in entry["facts"]["format"], entry
        [finding] = entry["findings"]
        assert finding["code"] == "IK902" and finding["severity"] == "info" and word in finding["message"]
    assert data["summary"]["errors"] == 0
    assert interpkit("scan", tmp_path).returncode == 0


# ------------------------------------------------------------------------------ verify wheels

def _fixture_wheel(folder: Path, built_fixtures, names: list[str]) -> Path:
    """A wheel of package `ikv` holding the named compiled fixtures."""
    wheel = folder / "ikv-0.1-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("ikv/__init__.py", "")
        for name in names:
            zf.write(built_fixtures(name), f"ikv/{built_fixtures(name).name}")
        zf.writestr("ikv-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: ikv\nVersion: 0.1\n")
    return wheel


def test_verify_accepts_a_wheel_and_names_members_inside_it(tmp_path, built_fixtures):
    names = ["clean", "multi_phase_isolated"]
    wheel = _fixture_wheel(tmp_path, built_fixtures, names)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = interpkit("verify", wheel, "-f", "json", env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    rows = {row["module"]: row for row in data["results"]}
    assert sorted(rows) == [f"ikv.{name}" for name in names]
    for name in names:
        row = rows[f"ikv.{name}"]
        assert row["status"] == "ok" and row["agrees"] is True, row
        assert row["path"] == f"{wheel}!ikv/{built_fixtures(name).name}"
    assert list(scratch.iterdir()) == []  # the unpacked copy is gone
    concise = interpkit("verify", wheel, "-f", "concise", "-q")
    assert sorted(concise.stdout.splitlines()) == sorted(
        f"{rows[m]['path']}: {m} predicted ok, observed ok on Python {rows[m]['python']} (ok, agrees)" for m in rows)


def test_verify_loads_wheels_found_inside_a_folder(tmp_path, built_fixtures):
    folder = tmp_path / "dist"
    folder.mkdir()
    wheel = _fixture_wheel(folder, built_fixtures, ["clean"])
    (folder / "broken-0.1-py3-none-any.whl").write_bytes(b"PK\x03\x04 not a zip")
    proc = interpkit("verify", folder, "-f", "json")
    data = json.loads(proc.stdout)
    [row] = data["results"]
    assert row["module"] == "ikv.clean" and row["status"] == "ok", row  # imported as its package's module
    assert row["path"] == f"{wheel}!ikv/{built_fixtures('clean').name}"
    [error] = data["errors"]  # the broken wheel, once
    assert error["path"] == str(folder / "broken-0.1-py3-none-any.whl") and "not a valid zip" in error["error"]
    assert proc.returncode == 1  # an unreadable input among verified ones is a failed check
