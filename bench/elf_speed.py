"""Bulk symbol reading vs pyelftools' iter_symbols() vs `nm -D`, side by side from one run.

    python bench/elf_speed.py [LIBRARY.so]     (default: torch's libtorch_cpu.so)

Prints wall time of each way of listing the dynamic symbol names, their ratios, and whether
the names agree. Speed is reported, never asserted (docs/conventions.md convention 10).
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from interpkit.analyzer.elf.image import ElfImage  # noqa: E402
from interpkit.analyzer.elf.symbols import Symbols  # noqa: E402


def default_library() -> Path | None:
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "lib" / "libtorch_cpu.so"


def timed(func):
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def bulk(path: Path) -> list[str]:
    with ElfImage.open(path) as image:
        return Symbols.read(image).dynsym.names


def bulk_both_tables(path: Path) -> int:
    with ElfImage.open(path) as image:
        symbols = Symbols.read(image)
        return len(symbols.dynsym) + len(symbols.symtab)


def pyelftools(path: Path) -> list[str]:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as fh:
        return [s.name for s in ELFFile(fh).get_section_by_name(".dynsym").iter_symbols()]


def nm(path: Path) -> int:
    out = subprocess.run(["nm", "-D", str(path)], capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else default_library()
    if path is None or not path.is_file():
        print("no library to measure (pass a path, or install torch)", file=sys.stderr)
        return 2
    rows = []
    t_bulk, names = timed(lambda: bulk(path))
    rows.append(("bulk .dynsym (struct/memoryview)", t_bulk, len(names)))
    t_both, count = timed(lambda: bulk_both_tables(path))
    rows.append(("bulk .dynsym + .symtab", t_both, count))
    t_elf, ref = timed(lambda: pyelftools(path))
    rows.append(("pyelftools iter_symbols .dynsym", t_elf, len(ref)))
    if shutil.which("nm"):
        t_nm, lines = timed(lambda: nm(path))
        rows.append(("nm -D", t_nm, lines))
    print(f"{path} ({path.stat().st_size / 1e6:.0f} MB)")
    for label, seconds, n in rows:
        print(f"  {label:36s} {seconds:8.3f} s  {n:>9,d} symbols  {seconds / t_bulk:6.1f}x bulk")
    print(f"  names identical to pyelftools: {names == ref}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
