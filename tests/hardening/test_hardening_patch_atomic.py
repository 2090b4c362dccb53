"""`interpkit patch` never leaves half a file and never touches its input.

The output is staged and renamed into place, so whatever happens to the process (a hostile input
refused half-way, a SIGKILL at any moment) the output path holds nothing, the complete previous
file, or the complete new one; the input's sha256 is the same before and after every run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.hardening.hardening_hostile import WHEEL_NAME, assert_no_traceback, run_cli, wheel_members, zip_with_members  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
PREVIOUS = b"a previous, complete output that must survive a failed run\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def patch(source: Path, outdir: Path) -> subprocess.CompletedProcess:
    proc = run_cli("patch", source, "-o", outdir, "--no-verify", "--format", "json")
    assert_no_traceback(proc)
    return proc


@pytest.fixture
def extension_input(built_fixtures, tmp_path) -> Path:
    """A fixture with a fixable finding (GNU_UNIQUE symbols are relinked), so patching changes bytes."""
    source = built_fixtures("gnu_unique_cpp")
    folder = tmp_path / "in"
    folder.mkdir()
    return Path(shutil.copy(source, folder / source.name))


@pytest.fixture
def wheel_input(built_fixtures, tmp_path) -> Path:
    folder = tmp_path / "in-wheel"
    folder.mkdir()
    extension = built_fixtures("gnu_unique_cpp")
    return zip_with_members(folder / WHEEL_NAME, wheel_members([(f"evil/{extension.name}", extension.read_bytes())]))


@pytest.fixture
def reference(tmp_path):
    """reference(input) -> bytes of a complete, undisturbed patch of input (patching is deterministic)."""
    def make(source: Path) -> bytes:
        out = tmp_path / f"reference-{source.suffix.lstrip('.')}"
        digest = sha256(source)
        proc = patch(source, out)
        assert sha256(source) == digest
        result = out / source.name
        assert result.is_file(), proc.stderr
        assert result.read_bytes() != source.read_bytes()  # the patch really edits something
        return result.read_bytes()
    return make


def test_patch_is_deterministic_and_leaves_input_alone(extension_input, reference, tmp_path):
    first = reference(extension_input)
    out = tmp_path / "again"
    patch(extension_input, out)
    assert (out / extension_input.name).read_bytes() == first
    assert not [p for p in out.iterdir() if p.name.startswith(".interpkit-")]


def killed_runs(source: Path, out: Path, delays: list[float]):
    """Run patch and SIGKILL its process group after each delay; yields after each kill."""
    for delay in delays:
        proc = subprocess.Popen([sys.executable, "-m", "interpkit", "patch", str(source), "-o", str(out),
                                 "--no-verify", "--format", "json"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        yield delay, proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["extension", "wheel"])
def test_sigkill_at_any_moment_leaves_old_or_new_never_half(kind, extension_input, wheel_input, reference, tmp_path):
    source = extension_input if kind == "extension" else wheel_input
    complete = reference(source)
    digest = sha256(source)
    out = tmp_path / "out"
    out.mkdir()
    target = out / source.name
    # Spread the kills over a whole run: start-up, scan, staging, rename (a full run takes ~2-4 s).
    delays = [0.05, 0.3, 0.8, 1.3, 1.8, 2.4, 3.0, 4.0]
    outcomes = set()
    for delay, returncode in killed_runs(source, out, delays):
        assert sha256(source) == digest, delay
        if target.exists():
            content = target.read_bytes()
            assert content in (PREVIOUS, complete), f"half-written output after a kill at {delay} s"
            outcomes.add("new" if content == complete else "previous")
            if kind == "wheel" and content == complete:
                assert zipfile.ZipFile(target).testzip() is None
        else:
            outcomes.add("nothing")
        target.unlink(missing_ok=True)
        target.write_bytes(PREVIOUS)  # the next run starts from a complete previous output
    assert "previous" in outcomes  # at least one kill landed before the rename
    # A clean run afterwards still converges on the same bytes (staging leftovers do not interfere).
    proc = patch(source, out)
    assert target.read_bytes() == complete, proc.stderr


def test_failed_patch_keeps_previous_output(tmp_path, wheel_input, reference):
    """A wheel refused half-way through (a zip-slip member) leaves the earlier output untouched."""
    complete = reference(wheel_input)
    out = tmp_path / "out"
    out.mkdir()
    (out / WHEEL_NAME).write_bytes(complete)
    hostile_folder = tmp_path / "hostile"
    hostile_folder.mkdir()
    hostile = zip_with_members(hostile_folder / WHEEL_NAME,
                               wheel_members([("evil/../../interpkit-hardening-escape", b"x")]))
    digest = sha256(hostile)
    proc = patch(hostile, out)
    assert proc.returncode == 2 and "escapes the archive" in proc.stderr  # unusable input
    assert (out / WHEEL_NAME).read_bytes() == complete
    assert sha256(hostile) == digest
    assert sorted(p.name for p in out.iterdir()) == [WHEEL_NAME]  # and no staging folder left behind


def test_failed_patch_with_nothing_before_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    broken = tmp_path / WHEEL_NAME
    broken.write_bytes(b"PK\x03\x04 truncated")
    proc = patch(broken, out)
    assert proc.returncode == 2 and "not a valid zip archive" in proc.stderr  # unusable input
    assert not out.exists() or list(out.iterdir()) == []


def test_corrupt_extension_is_refused_and_nothing_written(built_fixtures, tmp_path):
    """An input the ELF reader refuses is an error (one line), not a copied or half-patched output."""
    data = bytearray(built_fixtures("gnu_unique_cpp").read_bytes())
    data[40:48] = (1 << 62).to_bytes(8, "little")  # e_shoff far past the end
    source = tmp_path / "in" / "corrupt.cpython-311-x86_64-linux-gnu.so"
    source.parent.mkdir()
    source.write_bytes(bytes(data))
    out = tmp_path / "out"
    proc = patch(source, out)
    assert proc.returncode == 2  # unusable input
    assert proc.stderr.startswith(f"interpkit: error: cannot patch {source.name}") and proc.stderr.count("\n") == 1
    assert list(out.iterdir()) == []
    assert source.read_bytes() == bytes(data)
