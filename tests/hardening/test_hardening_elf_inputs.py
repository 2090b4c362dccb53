"""Hostile ELF inputs: each costs one one-line `error` entry (or gets a correct analysis), never the scan.

Every file is derived from a real fixture build or written field by field at test time
(tests/hardening/hardening_hostile.py); nothing binary is committed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.core.findings import Backend, FileKind, Verdict

from tests.hardening.hardening_hostile import (  # noqa: E402
    SH_LINK,
    SH_SIZE,
    assert_no_traceback,
    corruptions,
    run_cli,
    section_named,
    set_u32,
    set_u64,
    truncation_points,
    write_elf,
)

# Corruptions after which no reader can make sense of the file: these must be error entries.
MUST_REFUSE = (
    "e_shoff_past_end", "e_shoff_huge", "e_phoff_huge", "e_shentsize_zero", "e_phentsize_tiny",
    "e_phentsize_zero_phnum_huge",
    "ei_class_invalid", "ei_data_invalid", "ei_class_32_on_64_body", "ei_data_big_on_little_body",
    "dynsym_sh_link_out_of_range", "dynsym_sh_size_huge", "dynsym_sh_offset_past_end", "dynsym_sh_entsize_zero",
    "dynamic_sh_link_out_of_range", "symtab_sh_size_huge", "rela_sh_size_huge", "rela_sh_offset_past_end",
)


def only_result(path: Path):
    results = analyze_elf_files([path], Config(), closure=False)
    assert len(results) == 1, results
    return results[0]


def assert_clean_outcome(result, path: Path) -> None:
    """An analysis, or one short line that names the file; never half of each."""
    assert result.kind in (FileKind.ERROR, FileKind.EXTENSION, FileKind.LIBRARY)
    if result.kind is FileKind.ERROR:
        assert result.error and "\n" not in result.error and len(result.error) < 400, result.error
        assert str(path) in result.error
        assert result.findings == []
        assert set(result.verdicts.values()) == {Verdict.UNKNOWN}
    else:
        assert result.error is None


@pytest.fixture(scope="module")
def originals(built_fixtures):
    return {name: built_fixtures(name).read_bytes() for name in ("clean", "gnu_unique_cpp")}


@pytest.mark.parametrize("fixture", ["clean", "gnu_unique_cpp"])
def test_every_header_corruption_is_refused_or_read(originals, fixture, tmp_path):
    data = originals[fixture]
    for name, corrupted in corruptions(data).items():
        path = tmp_path / f"{name}.so"
        path.write_bytes(corrupted)
        result = only_result(path)
        assert_clean_outcome(result, path)
        if name in MUST_REFUSE:
            assert result.kind is FileKind.ERROR, (name, result)


def test_forged_section_size_is_refused_before_it_is_read(originals, tmp_path):
    """sh_size of 8 GiB on a 16 KiB file: refused by comparing with the file, not by allocating it."""
    data = bytearray(originals["clean"])
    header = section_named(data, 2)  # .symtab: 24-byte entries, so the size stays a multiple
    set_u64(data, header + SH_SIZE, 24 << 30)
    path = tmp_path / "forged.so"
    path.write_bytes(bytes(data))
    result = only_result(path)
    assert result.kind is FileKind.ERROR
    assert "runs past the end of the file" in result.error


def test_dynamic_linked_to_a_non_string_table_names_the_reason(originals, tmp_path):
    """Found by fuzz/fuzz_elf.py: pyelftools only asserts this link, so it used to read `(AssertionError)`."""
    data = bytearray(originals["clean"])
    set_u32(data, section_named(data, 6) + SH_LINK, 0)  # the null section
    path = tmp_path / "dynlink.so"
    path.write_bytes(bytes(data))
    result = only_result(path)
    assert result.kind is FileKind.ERROR
    assert "not a string table" in result.error


@pytest.mark.parametrize("fixture", ["clean", "gnu_unique_cpp"])
def test_truncated_at_many_offsets(originals, fixture, tmp_path):
    data = originals[fixture]
    for cut in truncation_points(len(data)):
        path = tmp_path / f"cut{cut}.so"
        path.write_bytes(data[:cut])
        result = only_result(path)
        assert_clean_outcome(result, path)
        if cut < 64:  # not even a whole ELF64 header
            assert result.kind is FileKind.ERROR, cut


@pytest.mark.parametrize("elfclass", [32, 64])
@pytest.mark.parametrize("little", [True, False], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("machine", [3, 40, 62, 183], ids=["i386", "arm", "x86-64", "aarch64"])
def test_foreign_but_valid_elf_is_read(tmp_path, elfclass, little, machine):
    """Hand-written 32-bit, big-endian and non-x86 objects are valid ELF: they are read, and the
    PyInit_ export makes them extensions (whose verdicts the binary cannot prove)."""
    path = tmp_path / "foreign.so"
    path.write_bytes(write_elf(elfclass=elfclass, little=little, machine=machine))
    result = only_result(path)
    assert result.kind is FileKind.EXTENSION, result.error
    assert result.module == "foreign"
    assert result.facts["init"][0]["module"] == "foreign"


def test_real_32_bit_build_is_read(tmp_path):
    """A 32-bit x86 shared object linked by binutils (no 32-bit libc needed: -nostdlib)."""
    source = tmp_path / "lib32.c"
    source.write_text("int interpkit_value(void) { return 32; }\n")
    obj, lib = tmp_path / "lib32.o", tmp_path / "lib32.so"
    compiled = subprocess.run(["gcc", "-m32", "-fPIC", "-c", str(source), "-o", str(obj)], capture_output=True)
    linked = compiled.returncode == 0 and subprocess.run(
        ["ld", "-m", "elf_i386", "-shared", str(obj), "-o", str(lib)], capture_output=True).returncode == 0
    if not linked:
        pytest.skip("this toolchain cannot produce 32-bit x86 objects")
    result = only_result(lib)
    assert result.kind is FileKind.LIBRARY
    assert result.facts["exports"] == 1


def test_non_elf_and_empty(tmp_path):
    for name, data in {"text.so": b"hello\n", "empty.so": b"", "magic_only.so": b"\x7fELF",
                       "zip.so": b"PK\x03\x04" + bytes(100), "random.so": os.urandom(4096)}.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = only_result(path)
        assert result.kind is FileKind.ERROR, name
        assert_clean_outcome(result, path)


def test_fifo_directory_and_loop_given_to_the_elf_analyzer(tmp_path):
    fifo = tmp_path / "pipe.so"
    os.mkfifo(fifo)
    folder = tmp_path / "x.so"
    folder.mkdir()
    loop = tmp_path / "loop.so"
    loop.symlink_to(tmp_path / "loop2.so")
    (tmp_path / "loop2.so").symlink_to(loop)
    results = analyze_elf_files([fifo, folder, loop], Config(), closure=False)  # a FIFO read would block here
    assert [r.kind for r in results] == [FileKind.ERROR] * 3
    assert "not a regular file" in results[0].error
    assert "is a directory" in results[1].error
    for result, path in zip(results, [fifo, folder, loop]):
        assert_clean_outcome(result, path)


# --------------------------------------------------------------------------- the real CLI

def scan_json(*args) -> tuple[subprocess.CompletedProcess, dict | None]:
    proc = run_cli("scan", "--format", "json", "--no-closure", *args)
    assert_no_traceback(proc)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else None)


@pytest.fixture(scope="module")
def hostile_tree(originals, tmp_path_factory):
    """One folder holding every kind of hostile entry next to one good extension."""
    root = tmp_path_factory.mktemp("hostile-tree")
    data = originals["clean"]
    for name, corrupted in corruptions(data).items():
        (root / f"{name}.so").write_bytes(corrupted)
    for cut in (0, 10, 63, 200, len(data) // 2):
        (root / f"cut{cut}.so").write_bytes(data[:cut])
    (root / "foreign-be-arm.so").write_bytes(write_elf(elfclass=32, little=False, machine=40))
    (root / "text.so").write_text("not an ELF file\n")
    (root / "x.so").mkdir()
    (root / "x.so" / "inner.so").write_text("also not ELF\n")
    os.mkfifo(root / "pipe.so")
    (root / "loop_a.so").symlink_to("loop_b.so")
    (root / "loop_b.so").symlink_to("loop_a.so")
    (root / "dir_loop").mkdir()
    (root / "dir_loop" / "again").symlink_to("..")  # a link back up: must not be followed forever
    (root / "dangling.so").symlink_to("/nonexistent/interpkit/hardening.so")
    shutil.copy(Path(_good_fixture_path()), root / "good.cpython-311-x86_64-linux-gnu.so")
    return root


def _good_fixture_path() -> Path:
    from fixtures.build import build_fixture

    return build_fixture("multi_phase_no_slot")


def test_cli_scans_a_hostile_tree_to_the_end(hostile_tree):
    proc, report = scan_json(hostile_tree)
    assert proc.returncode in (0, 1), proc.stderr  # findings or errors, never a usage error
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    good = by_name["good.cpython-311-x86_64-linux-gnu.so"]
    assert good["kind"] == "extension" and "IK102" in {f["code"] for f in good["findings"]}
    for name in MUST_REFUSE + ("cut0.so", "cut10.so", "cut63.so", "text.so", "inner.so"):
        key = name if name.endswith(".so") else f"{name}.so"
        assert by_name[key]["kind"] == "error", key
    assert "not a regular file" in by_name["pipe.so"]["error"]
    assert "symbolic link loop" in by_name["loop_a.so"]["error"]
    assert by_name["foreign-be-arm.so"]["kind"] == "extension"
    for entry in report["files"]:
        if entry["kind"] == "error":
            assert entry["error"] and "\n" not in entry["error"] and len(entry["error"]) < 400
    # Every corrupted file was reported, one entry each.
    assert len(report["files"]) == len({f["path"] for f in report["files"]})


@pytest.mark.parametrize("entry", ["pipe.so", "loop_a.so", "text.so", "cut10.so"])
def test_cli_with_one_hostile_file_named(hostile_tree, entry):
    proc, report = scan_json(hostile_tree / entry)
    assert proc.returncode == 1, proc.stderr
    [result] = report["files"]
    assert result["kind"] == "error" and "\n" not in result["error"]


def test_cli_directory_named_like_a_library(hostile_tree):
    """x.so is a folder: it is walked like one, and its bad member is an error entry."""
    proc, report = scan_json(hostile_tree / "x.so")
    assert proc.returncode == 1
    assert [Path(f["path"]).name for f in report["files"]] == ["inner.so"]


def test_cli_missing_path_is_the_only_usage_error(hostile_tree):
    proc, report = scan_json(hostile_tree / "no-such-file.so", hostile_tree / "text.so")
    assert proc.returncode == 2 and report is None
    assert proc.stderr.startswith("interpkit: error: cannot scan") and proc.stderr.count("\n") == 1


def test_cli_unreadable_file(tmp_path, originals):
    """chmod 000 does not stop root, so as root the scan runs without the capabilities that let
    root read anything (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH); as any other user chmod suffices."""
    secret = tmp_path / "secret.so"
    secret.write_bytes(originals["clean"])
    secret.chmod(0o000)
    good = tmp_path / "good.so"
    good.write_bytes(originals["clean"])
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: no way to make a file unreadable")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    proc = subprocess.run([*prefix, sys.executable, "-m", "interpkit", "scan", "--format", "json", "--no-closure",
                           str(tmp_path)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert_no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert by_name["secret.so"]["kind"] == "error"
    assert "Permission denied" in by_name["secret.so"]["error"]
    assert by_name["good.so"]["kind"] == "extension"


def test_verdicts_of_error_entries_are_unknown(hostile_tree):
    proc, report = scan_json(hostile_tree / "text.so")
    [entry] = report["files"]
    assert entry["verdicts"] == {b.value: "unknown" for b in Backend}


def test_dt_needed_naming_a_fifo_does_not_block_the_closure(built_fixtures, tmp_path):
    """A DT_NEEDED with a slash is a path to ld.so; one that names a FIFO must not be opened for reading.
    The name is patched in place of `libgcc_s.so.1` (same length), through a short link in /tmp."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = Path(f"/tmp/ikf{uuid.uuid4().hex[:5]}")  # 13 characters, like libgcc_s.so.1
    link.symlink_to(fifo)
    try:
        data = built_fixtures("gnu_unique_cpp").read_bytes()
        assert data.count(b"libgcc_s.so.1\0") == 1
        path = tmp_path / "needs_fifo.so"
        path.write_bytes(data.replace(b"libgcc_s.so.1\0", str(link).encode() + b"\0"))
        results = analyze_elf_files([path], Config(), closure=True)
        assert results[0].kind is FileKind.EXTENSION
        # Either the closure leaves the FIFO unresolved (no entry of its own), or it gets
        # entries and each is an error; an entry that is anything else means it was read.
        entries = [r for r in results[1:] if str(r.path) == str(link)]
        unresolved = results[0].facts["closure"][str(link)] is None
        assert (unresolved and not entries) or (entries and all(r.kind is FileKind.ERROR for r in entries)), entries
        if unresolved:
            assert any(f.code == "IK306" and f.symbol == str(link) for f in results[0].findings)
    finally:
        link.unlink()
