"""The ELF part of a torch scan vs `nm -D` on the same files, and bulk symbol reading vs
pyelftools' iter_symbols() vs `nm -D` on one library, side by side from one run.

    python bench/elf_speed.py [LIBRARY.so]     (default: torch's libtorch_cpu.so)

First: interpkit's ELF analysis (facts, closure, every rule; what `interpkit scan <torch>
--only elf` does between start-up and the report) of torch's shared objects, cold (a fresh
process, no scan cache) and warm (the facts cache filled), against one `nm -D` over the same
files; interleaved rounds, best of each, with the ratio (target: cold <= 2x nm -D). Then the
wall time of each way of listing one library's dynamic symbol names, their ratios, and whether
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


_ANALYSIS = """\
import json, sys, time
from pathlib import Path
from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
files = [Path(p) for p in json.loads(sys.argv[1])]
started, cpu = time.perf_counter(), time.process_time()
results = analyze_elf_files(files, Config())
print(json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                  "results": len(results)}))
"""


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def torch_elf_files() -> list[Path]:
    library = default_library()
    if library is None:
        return []
    root = library.parent.parent
    return [p for p in sorted(root.rglob("*.so*")) if p.is_file() and not p.is_symlink()
            and p.read_bytes()[:4] == b"\x7fELF"]


def torch_scan_ratio(rounds: int = 3) -> None:
    import json
    import os
    import tempfile

    files = torch_elf_files()
    if not files or not shutil.which("nm"):
        print("torch ELF scan: skipped (needs torch and nm)")
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    names = json.dumps([str(f) for f in files])
    cold = warm = nm_s = cold_cpu = nm_cpu = float("inf")
    with tempfile.TemporaryDirectory(prefix="interpkit-elf-bench-") as cache:
        for index in range(rounds):   # interleaved: nm, cold, warm see the same machine
            before = _children_cpu()
            nm_s = min(nm_s, timed(lambda: subprocess.run(["nm", "-D", *map(str, files)], capture_output=True,
                                                          check=True))[0])
            nm_cpu = min(nm_cpu, _children_cpu() - before)
            fresh = dict(env, INTERPKIT_CACHE_DIR=os.path.join(cache, f"cold-{index}"))
            done = subprocess.run([sys.executable, "-c", _ANALYSIS, names], capture_output=True, text=True,
                                  env=fresh, check=True)
            cold = min(cold, json.loads(done.stdout)["seconds"])
            cold_cpu = min(cold_cpu, json.loads(done.stdout)["cpu"])
            done = subprocess.run([sys.executable, "-c", _ANALYSIS, names], capture_output=True, text=True,
                                  env=fresh, check=True)
            warm = min(warm, json.loads(done.stdout)["seconds"])
    size = sum(f.stat().st_size for f in files) / 1e6
    load = os.getloadavg()[0]
    print(f"torch ELF scan: {len(files)} files, {size:.0f} MB, best of {rounds}, load average {load:.2f}")
    print(f"  {'interpkit ELF analysis, cold':36s} {cold:8.3f} s  {cold / nm_s:6.2f}x nm -D")
    print(f"  {'interpkit ELF analysis, warm cache':36s} {warm:8.3f} s  {warm / nm_s:6.2f}x nm -D")
    print(f"  {'nm -D (one invocation, all files)':36s} {nm_s:8.3f} s  {1:6.2f}x nm -D")
    # CPU time moves less than wall time on a shared machine: the same comparison, for reading.
    print(f"  {'cpu time, cold analysis vs nm -D':36s} {cold_cpu:8.3f} s  {cold_cpu / nm_cpu:6.2f}x nm -D "
          f"({nm_cpu:.3f} s)")
    print(f"summary: torch ELF analysis cold {cold:.2f} s = {cold / nm_s:.2f}x nm -D {nm_s:.2f} s "
          f"(target <= 2.00: {'met' if cold <= 2 * nm_s else 'missed'}); warm {warm / nm_s:.2f}x; load average {load:.2f}")


def main(argv: list[str]) -> int:
    torch_scan_ratio()
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
