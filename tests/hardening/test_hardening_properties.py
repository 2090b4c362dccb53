"""Property-based tests: mutated real binaries and random source never raise past the analyzers.

ELF: byte mutations of real fixture builds (biased towards the ELF header and the section
header table, where one byte changes the meaning of everything after it) always give exactly
one FileResult; the facts builder itself only refuses with the clean exception types.
Source: random text, random token soup and mutations of the fixture models always give one
FileResult (python with findings, or a one-line error). Example counts stay modest: the machine
is shared.
"""
from __future__ import annotations

import itertools

import struct
from pathlib import Path

import pytest
from elftools.common.exceptions import ELFError, ELFParseError, ELFRelocationError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from interpkit.analyzer.config import Config
from interpkit.analyzer.elf import facts as facts_module
from interpkit.analyzer.elf.analyze import analyze_elf_files
from interpkit.core.findings import FileKind
from interpkit.analyzer.source.walk import scan_source_bytes, scan_source_text

REPO_ROOT = Path(__file__).resolve().parents[2]
ELF_FIXTURES = ("clean", "single_phase_static", "gnu_unique_cpp", "initial_exec_tls")
MODEL_FILES = sorted((REPO_ROOT / "fixtures" / "models").rglob("*.py"))
# What a malformed file may raise inside the facts builder and still count as a clean refusal
# (the scan turns each into a one-line error entry that names the reason).
CLEAN_REFUSALS = (ELFError, ELFParseError, ELFRelocationError, ValueError, struct.error, EOFError, OSError)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def binaries(built_fixtures):
    return {name: built_fixtures(name).read_bytes() for name in ELF_FIXTURES}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


def hot_offsets(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges where a mutation matters most: the ELF header and the section header table."""
    shoff = struct.unpack_from("<Q", data, 40)[0]
    return [(0, 64), (shoff, len(data)), (0, len(data))]


@st.composite
def mutated_binary(draw, binaries_by_name):
    name = draw(st.sampled_from(ELF_FIXTURES))
    data = bytearray(binaries_by_name[name])
    ranges = hot_offsets(bytes(data))
    for _ in range(draw(st.integers(1, 8))):
        low, high = draw(st.sampled_from(ranges))
        high = min(high, len(data))
        if high <= low:
            continue
        offset = draw(st.integers(low, high - 1))
        kind = draw(st.sampled_from(["set", "flip", "word", "insert", "delete"]))
        if kind == "set":
            data[offset] = draw(st.integers(0, 255))
        elif kind == "flip":
            data[offset] ^= 1 << draw(st.integers(0, 7))
        elif kind == "word":  # a whole field: 0, all ones, a huge or a tiny value
            value = draw(st.sampled_from([0, 0xFFFFFFFF, 0x7FFFFFFF, 1, len(data), len(data) * 16]))
            data[offset:offset + 4] = struct.pack("<I", value)[: len(data) - offset]
        elif kind == "insert":
            data[offset:offset] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[offset:offset + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def test_mutated_binaries_always_give_one_result(binaries, workdir):
    examples = itertools.count()

    @SETTINGS
    @given(mutated_binary(binaries))
    def check(data: bytes) -> None:
        # a new file per example: the facts caches key on (path, size, mtime), and two examples
        # of one size written within the clock's granularity would share a key
        path = workdir / f"mutant-{next(examples)}.so"
        path.write_bytes(data)
        try:
            facts_module.build_facts(path)
        except CLEAN_REFUSALS:
            pass
        results = analyze_elf_files([path], Config(), closure=False)
        assert len(results) == 1
        result = results[0]
        assert result.kind in (FileKind.ERROR, FileKind.EXTENSION, FileKind.LIBRARY)
        if result.kind is FileKind.ERROR:
            assert result.error and "\n" not in result.error and len(result.error) < 400

    check()


def test_random_bytes_named_so(workdir):
    examples = itertools.count()

    @SETTINGS
    @given(st.binary(max_size=512).map(lambda b: b"\x7fELF" + b))
    @example(b"\x7fELF\x02\x01\x01" + bytes(57))  # a header of zeros
    @example(b"\x7fELF\x01\x02\x01" + bytes(45) + b"\xff" * 8)  # big-endian 32-bit, garbage counts
    def check(data: bytes) -> None:
        path = workdir / f"random-{next(examples)}.so"  # a new file per example, as above
        path.write_bytes(data)
        [result] = analyze_elf_files([path], Config(), closure=False)
        assert result.kind in (FileKind.ERROR, FileKind.EXTENSION, FileKind.LIBRARY)
        if result.kind is FileKind.ERROR:
            assert "\n" not in result.error

    check()


# --------------------------------------------------------------------------- source

def assert_source_result(result, path: Path) -> None:
    assert result.kind in (FileKind.PYTHON, FileKind.ERROR)
    if result.kind is FileKind.ERROR:
        assert result.error and "\n" not in result.error and str(path) in result.error
    for finding in result.findings:
        assert finding.code.startswith("IK")
        assert finding.line is None or finding.line >= 1


PYTHON_TOKENS = [
    "import ", "from ", " as ", "ctypes", "torch", "os", "sys", ".", ",", ":", "(", ")", "[", "]", "{", "}",
    "def ", "class ", "lambda ", "return ", "yield ", "await ", "async ", "with ", "if ", "else", "try:", "except",
    "global ", "nonlocal ", "del ", "=", "==", "+=", "*", "**", "@", "->", "'", '"', 'f"{', "}", "\\", "#",
    "\n", "    ", "\t", "x", "_", "1", "0x", "1e", "CDLL", "RTLD_GLOBAL", "mode=", "signal", "atexit.register",
    "threading.Thread", "__file__", "load_library", "torch.ops.load_library", "# interpkit: ignore[", "IK402", "]",
]


@SETTINGS
@given(st.text(max_size=400))
@example("(" * 10000)
@example("x = " + "-" * 100000 + "1")
@example("x = " + "+".join(["1"] * 20000))
@example("f = " + "lambda: " * 3000 + "1")
@example("x = '\udcff'\n")
@example("import ctypes\nctypes.CDLL('x', mode=ctypes.RTLD_GLOBAL)  # interpkit: ignore[\n")
def test_random_text(text: str) -> None:
    path = Path("random_text.py")
    assert_source_result(scan_source_text(path, text, Config()), path)


@SETTINGS
@given(st.lists(st.sampled_from(PYTHON_TOKENS), max_size=80).map("".join))
def test_token_soup(text: str) -> None:
    path = Path("token_soup.py")
    assert_source_result(scan_source_text(path, text, Config()), path)


@SETTINGS
@given(st.binary(max_size=400))
@example(b"\xef\xbb\xbfimport os\n")
@example(b"# -*- coding: latin-1 -*-\nx = '\xe9'\n")
@example(b"# -*- coding: no-such-codec -*-\n")
@example(b"\xff\xfe\x00\x00")
def test_random_bytes(data: bytes) -> None:
    path = Path("random_bytes.py")
    assert_source_result(scan_source_bytes(path, data, Config()), path)


@st.composite
def mutated_model(draw):
    path = draw(st.sampled_from(MODEL_FILES))
    text = path.read_text(encoding="utf-8", errors="replace")
    for _ in range(draw(st.integers(1, 6))):
        if not text:
            break
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "duplicate", "dedent"]))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "insert":
            text = text[:at] + draw(st.sampled_from(PYTHON_TOKENS) | st.text(max_size=8)) + text[at:]
        elif kind == "duplicate":
            text = text[:at] + text[at:at + draw(st.integers(1, 200))] + text[at:]
        else:
            text = text.replace("\n    ", "\n", 1)
    return path, text


@SETTINGS
@given(mutated_model())
def test_mutated_models(case) -> None:
    original, text = case
    assert_source_result(scan_source_text(original, text, Config()), original)
