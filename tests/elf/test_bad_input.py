"""Broken inputs become one kind=error entry with a one-line message, never an exception."""
from __future__ import annotations

from pathlib import Path

import pytest

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files, is_elf
from interpkit.core.findings import Backend, FileKind, Severity, Verdict


def only_result(path: Path):
    [result] = analyze_elf_files([path], Config())
    return result


def assert_one_line_error(result, path: Path, fragment: str):
    assert result.kind is FileKind.ERROR
    assert result.findings == []
    assert "\n" not in result.error and len(result.error) < 400
    assert str(path) in result.error and fragment in result.error
    assert result.verdicts == {b: Verdict.UNKNOWN for b in Backend}


def test_text_file_named_so(tmp_path):
    path = tmp_path / "x.so"
    path.write_text("this is not a shared object\n")
    assert not is_elf(path)
    assert_one_line_error(only_result(path), path, "not an ELF file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.so"
    path.write_bytes(b"")
    assert_one_line_error(only_result(path), path, "not an ELF file")


def test_missing_file(tmp_path):
    path = tmp_path / "gone.so"
    assert_one_line_error(only_result(path), path, "no such file")


def test_header_only(built_fixtures, tmp_path):
    path = tmp_path / "header.so"
    path.write_bytes(built_fixtures("clean").read_bytes()[:40])
    assert is_elf(path)
    assert_one_line_error(only_result(path), path, "truncated")


@pytest.mark.parametrize("keep", [64, 1000, 4096, 0.5, 0.9])
def test_truncated_real_build(built_fixtures, tmp_path, keep):
    data = built_fixtures("single_phase_static").read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "truncated.so"
    path.write_bytes(data[:size])
    assert_one_line_error(only_result(path), path, "cannot read")


def test_section_headers_pointing_past_the_end(built_fixtures, tmp_path):
    data = bytearray(built_fixtures("clean").read_bytes())
    data[0x28:0x30] = (len(data) * 4).to_bytes(8, "little")  # e_shoff far past the end
    path = tmp_path / "bad_shoff.so"
    path.write_bytes(bytes(data))
    assert_one_line_error(only_result(path), path, "cannot read")


def test_flipped_bytes_never_raise(built_fixtures, tmp_path):
    """Corrupt every 97th byte of a real build: the result is either an analysis or an error entry."""
    data = bytearray(built_fixtures("multi_phase_no_slot").read_bytes())
    for offset in range(64, len(data), 97):
        data[offset] ^= 0xFF
    path = tmp_path / "flipped.so"
    path.write_bytes(bytes(data))
    result = only_result(path)
    assert result.kind in (FileKind.ERROR, FileKind.EXTENSION, FileKind.LIBRARY)
    if result.kind is FileKind.ERROR:
        assert "\n" not in result.error


def test_bad_file_does_not_cost_the_others(built_fixtures, tmp_path):
    bad = tmp_path / "bad.so"
    bad.write_text("nope")
    good = built_fixtures("multi_phase_no_slot")
    results = analyze_elf_files([bad, good], Config(), closure=False)
    assert [r.kind for r in results] == [FileKind.ERROR, FileKind.EXTENSION]
    assert "IK102" in {f.code for f in results[1].findings}


def test_unresolved_dependency(built_fixtures, tmp_path):
    """A DT_NEEDED that nothing provides: IK306, an error, and fail in every backend (ld.so refuses
    the library), built here with a fake library."""
    import subprocess

    lib_src = tmp_path / "dep.c"
    lib_src.write_text("int interpkit_dep_value(void) { return 3; }\n")
    lib = tmp_path / "libinterpkitdep.so"
    subprocess.run(["gcc", "-shared", "-fPIC", str(lib_src), "-o", str(lib)], check=True)
    user_src = tmp_path / "user.c"
    user_src.write_text("int interpkit_dep_value(void);\nint use(void) { return interpkit_dep_value(); }\n")
    user = tmp_path / "sub" / "libuser.so"
    user.parent.mkdir()
    subprocess.run(["gcc", "-shared", "-fPIC", str(user_src), "-L", str(tmp_path), "-linterpkitdep",
                    "-o", str(user)], check=True)
    [result] = analyze_elf_files([user], Config())
    assert result.kind is FileKind.LIBRARY
    assert [(f.code, f.severity) for f in result.findings] == [("IK306", Severity.ERROR)]
    assert result.facts["closure"]["libinterpkitdep.so"] is None
    assert set(result.verdicts.values()) == {Verdict.FAIL}

    # With a $ORIGIN RUNPATH the loader (and the closure) finds it, and it is scanned once as a library.
    found = tmp_path / "libuser2.so"
    subprocess.run(["gcc", "-shared", "-fPIC", str(user_src), "-L", str(tmp_path), "-linterpkitdep",
                    "-Wl,--enable-new-dtags,-rpath,$ORIGIN", "-o", str(found)], check=True)
    results = analyze_elf_files([found], Config())
    assert [r.path for r in results] == [found, lib]
    assert results[1].kind is FileKind.LIBRARY and results[1].facts["needed_by"] == str(found)
    assert [f.code for f in results[0].findings] == []
    assert results[0].facts["closure"]["libinterpkitdep.so"] == str(lib)
