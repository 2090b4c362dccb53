"""Atheris target for the ELF path: any bytes, written as a `.so`, become exactly one FileResult.

Run (libFuzzer flags pass straight through; the seed corpus is built from the fixture
extensions on first use)::

    python fuzz/fuzz_elf.py -atheris_runs=100000
    python fuzz/fuzz_elf.py -max_total_time=300 -rss_limit_mb=2048 -timeout=10

The checked contract is the scan's: `analyze_elf_files` never raises, returns one result, and
an `error` entry carries one short line. With ``INTERPKIT_FUZZ_STRICT=1`` the target calls
`facts_for` itself first and also fails on exception types that mean our own code indexed or
unpacked something it had not validated (IndexError, KeyError, TypeError, ...): those still
become clean error entries in a scan, but the message is then a Python error, not a reason.
"""
from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import atheris

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

with atheris.instrument_imports(include=["analyzer", "elftools"]):
    from elftools.common.exceptions import ELFError, ELFParseError, ELFRelocationError

    from interpkit.analyzer.config import Config
    from interpkit.analyzer.elf import facts as facts_module
    from interpkit.analyzer.elf.analyze import analyze_elf_files
    from interpkit.core.findings import FileKind

CORPUS_DIR = Path(os.environ.get("INTERPKIT_FUZZ_CORPUS",
                                 Path.home() / ".cache" / "interpkit-fuzz" / "elf-corpus"))
SEED_FIXTURES = ("clean", "single_phase_static", "multi_phase_no_slot", "gnu_unique_cpp", "initial_exec_tls",
                 "static_type", "gilstate", "mixed_init")
STRICT = os.environ.get("INTERPKIT_FUZZ_STRICT") == "1"
# What a malformed file may raise inside build_facts and still count as a clean refusal.
CLEAN_REFUSALS = (ELFError, ELFParseError, ELFRelocationError, ValueError, struct.error, EOFError, OSError)

_SCRATCH = Path("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())


def _scratch_file() -> Path:
    """One input file per fuzzing process. libFuzzer ends the process from C, so no Python exit
    hook cleans up: folders of processes that are gone are removed at the next start instead."""
    for stale in _SCRATCH.glob("interpkit-fuzz-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(stale, ignore_errors=True)
    folder = _SCRATCH / f"interpkit-fuzz-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    return folder / "input.so"


_TARGET = _scratch_file()
_CONFIG = Config()


def build_seed_corpus(folder: Path = CORPUS_DIR) -> Path:
    """Real fixture builds plus hand-written foreign ELF files (32-bit, big-endian, non-x86)."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return folder
    from fixtures.build import FixtureUnavailable, build_fixture

    sys.path.insert(0, str(REPO_ROOT / "tests" / "hardening"))
    from hardening_hostile import write_elf

    for name in SEED_FIXTURES:
        try:
            (folder / f"{name}.so").write_bytes(build_fixture(name).read_bytes())
        except (FixtureUnavailable, RuntimeError) as exc:
            print(f"fuzz_elf: seed {name} skipped ({exc})", file=sys.stderr)
    for elfclass in (32, 64):
        for little in (True, False):
            for machine in (3, 40, 62, 183):
                blob = write_elf(elfclass=elfclass, little=little, machine=machine)
                (folder / f"hand-{elfclass}-{'le' if little else 'be'}-{machine}.so").write_bytes(blob)
    return folder


def test_one_input(data: bytes) -> None:
    _TARGET.write_bytes(data)
    facts_module._CACHE.clear()  # same path, new bytes: never answer from the cache (and never grow it)
    if STRICT and data[:4] == b"\x7fELF" and len(data) >= 52:
        try:
            facts_module.facts_for(_TARGET)  # cached: the scan below reuses these facts
        except CLEAN_REFUSALS:
            pass
    results = analyze_elf_files([_TARGET], _CONFIG, closure=False)
    assert len(results) == 1, results
    result = results[0]
    assert result.kind in (FileKind.ERROR, FileKind.EXTENSION, FileKind.LIBRARY), result.kind
    if result.kind is FileKind.ERROR:
        assert result.error and "\n" not in result.error and len(result.error) < 600, result.error
        assert result.findings == []


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        argv.append(str(build_seed_corpus()))
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
