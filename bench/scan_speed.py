"""How fast does interpkit scan? Prints side-by-side numbers; asserts nothing.

Sections (each a function taking the parsed args; add more below):
  source   the model-source analyzer over the installed torch package's Python files:
           cold (no cache, 1 and 2 worker processes) and warm (cache hit), files/second.
  elf      interpkit's ELF scan of torch's shared objects vs `nm -D` / `readelf --dyn-syms`
           on the same files, `abi3audit` on the extension modules and `auditwheel show`
           on a wheel of them (each skipped with the reason when not installed).

    python bench/scan_speed.py                 # every section
    python bench/scan_speed.py source --limit 400
    python bench/scan_speed.py elf --tools-venv /tmp/venv   # abi3audit, auditwheel installed there
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def _torch_sources(limit: int | None) -> list[Path]:
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        raise SystemExit("torch is not installed: nothing to scan")
    files = sorted(Path(spec.origin).parent.rglob("*.py"))
    if limit:
        step = max(1, len(files) // limit)
        files = files[::step][:limit]
    return files


def section_source(args) -> None:
    from interpkit.analyzer.config import Config
    from interpkit.analyzer.source.walk import analyze_source_files, source_rules

    files = _torch_sources(args.limit)
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    rules = source_rules(Config())
    triggered = sum(1 for f in files if any(r.trigger.search(f.read_text(errors="replace")) for r in rules))
    print(f"## source: {len(files)} torch .py files, {size_mb:.1f} MB; "
          f"{triggered} ({100 * triggered / len(files):.0f}%) contain a rule trigger and go through LibCST")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["INTERPKIT_CACHE_DIR"] = cache
        runs = [("cold, 1 process", 1, False), ("cold, 2 processes", 2, True), ("warm cache", 2, True)]
        if args.quick:  # one cold run that fills the cache, then the warm run
            runs = [("cold, 1 process", 1, True), ("warm cache", 1, True)]
        for label, jobs, use_cache in runs:
            started = time.perf_counter()
            results = analyze_source_files(files, Config(), jobs=jobs, cache=use_cache)
            seconds = time.perf_counter() - started
            rows.append((label, seconds, len(files) / seconds))
            last = results
    print(f"{'run':<20}{'seconds':>10}{'files/s':>10}")
    for label, seconds, rate in rows:
        print(f"{label:<20}{seconds:>10.1f}{rate:>10.1f}")
    kinds = Counter(r.kind.value for r in last)
    codes = Counter(f.code for r in last for f in r.findings)
    print(f"results: {dict(kinds)}; findings by code: {dict(sorted(codes.items()))}")


# ---------------------------------------------------------------------------- elf

_TIMED_ANALYSIS = """\
import json, sys, time
from pathlib import Path
from interpkit.analyzer.config import Config
from interpkit.analyzer.elf.analyze import analyze_elf_files
files = [Path(p) for p in json.loads(sys.argv[1])]
started = time.perf_counter()
results = analyze_elf_files(files, Config())
print(json.dumps({"seconds": time.perf_counter() - started, "files": len(results),
                  "findings": sum(len(r.findings) for r in results)}))
"""


def _torch_shared_objects() -> list[Path]:
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        raise SystemExit("torch is not installed: nothing to scan")
    found = []
    for path in sorted(Path(spec.origin).parent.rglob("*.so*")):
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            found.append(path)
    return found


def _wall(argv: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - started, done


def _tool(name: str, venv: Path | None) -> str | None:
    if venv is not None and (venv / "bin" / name).is_file():
        return str(venv / "bin" / name)
    return shutil.which(name)


def _wheel_of(files: list[Path], folder: Path) -> Path:
    """A wheel holding torch's ELF files at their package paths: what `auditwheel show` reads."""
    root = files[0].parents[len(files[0].relative_to(_torch_root()).parts)]
    wheel = folder / "torch_elf-0.0.0-cp311-cp311-linux_x86_64.whl"
    dist = "torch_elf-0.0.0.dist-info"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            archive.write(path, str(path.relative_to(root)))
        archive.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: torch-elf\nVersion: 0.0.0\n")
        archive.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: false\n"
                         "Tag: cp311-cp311-linux_x86_64\n")
        archive.writestr(f"{dist}/RECORD", "")
    return wheel


def _torch_root() -> Path:
    return Path(importlib.util.find_spec("torch").origin).parent


def section_elf(args) -> None:
    """interpkit's ELF scan of torch's shared objects vs nm -D, readelf --dyn-syms, abi3audit, auditwheel show.

    interpkit runs cold in a child process (facts are cached per process only); the analysis is
    timed inside it (imports excluded) and the whole `interpkit scan --only elf` command from
    outside. nm and readelf each get all files in one invocation. abi3audit applies to the
    extension modules only; `auditwheel show` reads a wheel, so both it and `interpkit scan` get
    the same wheel of these files. Missing tools are skipped with the reason.
    """
    files = _torch_shared_objects()
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    extensions = [f for f in files if ".cpython-" in f.name or f.name.endswith(".abi3.so")]
    print(f"## elf: {len(files)} torch ELF files, {size_mb:.0f} MB ({len(extensions)} extension module(s)); "
          f"load average {os.getloadavg()[0]:.2f}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    names = json.dumps([str(f) for f in files])
    rows: list[tuple[str, float | None, str]] = []
    best_analysis = float("inf")
    for _ in range(args.repeat):
        _, done = _wall([sys.executable, "-c", _TIMED_ANALYSIS, names], env=env, check=True)
        measured = json.loads(done.stdout)
        best_analysis = min(best_analysis, measured["seconds"])
    rows.append(("interpkit ELF analysis (in-process)", best_analysis,
                 f"{measured['files']} results incl. closure, {measured['findings']} findings"))
    command = min(_wall([sys.executable, "-m", "interpkit", "scan", "--only", "elf", "--format", "json",
                         *map(str, files)], env=env)[0] for _ in range(args.repeat))
    rows.append(("interpkit scan --only elf (command)", command, "start-up and JSON included"))
    nm = readelf = None
    if shutil.which("nm"):
        nm = min(_wall(["nm", "-D", *map(str, files)], check=True)[0] for _ in range(args.repeat))
        rows.append(("nm -D", nm, "one invocation, all files"))
    else:
        rows.append(("nm -D", None, "skipped (nm not installed)"))
    if shutil.which("readelf"):
        readelf = min(_wall(["readelf", "--dyn-syms", "-W", *map(str, files)], check=True)[0]
                      for _ in range(args.repeat))
        rows.append(("readelf --dyn-syms -W", readelf, "one invocation, all files"))
    else:
        rows.append(("readelf --dyn-syms -W", None, "skipped (readelf not installed)"))
    abi3audit = _tool("abi3audit", args.tools_venv)
    if abi3audit is None:
        rows.append(("abi3audit", None, "skipped (not installed: pip install abi3audit into a throwaway venv, "
                                        "pass --tools-venv)"))
    elif not extensions:
        rows.append(("abi3audit", None, "skipped (no extension modules: it audits those only)"))
    else:
        seconds = min(_wall([abi3audit, "--assume-minimum-abi3", f"3.{sys.version_info.minor}",
                             *map(str, extensions)])[0] for _ in range(args.repeat))
        rows.append(("abi3audit (extension modules)", seconds,
                     f"{len(extensions)} file(s): torch is not abi3, so audited as if 3.{sys.version_info.minor}"))
    auditwheel = _tool("auditwheel", args.tools_venv)
    wheel_rows = []
    if auditwheel is None:
        rows.append(("auditwheel show", None, "skipped (not installed: pip install auditwheel into a throwaway "
                                              "venv, pass --tools-venv)"))
    else:
        with tempfile.TemporaryDirectory(prefix="interpkit-bench-") as folder:
            wheel = _wheel_of(files, Path(folder))
            shown = min(_wall([auditwheel, "show", str(wheel)])[0] for _ in range(args.repeat))
            ours = min(_wall([sys.executable, "-m", "interpkit", "scan", "--only", "elf", "--format", "json",
                              str(wheel)], env=env)[0] for _ in range(args.repeat))
        wheel_rows = [("auditwheel show (wheel of these files)", shown, "unpacks, lddtree, symbol versions"),
                      ("interpkit scan --only elf (same wheel)", ours, "unpacks, rules, closure")]
        rows += wheel_rows
    print(f"{'tool':<40}{'seconds':>10}{'vs nm -D':>10}  notes")
    for label, seconds, note in rows:
        ratio = f"{seconds / nm:>9.2f}x" if seconds is not None and nm else f"{'-':>10}"
        print(f"{label:<40}{seconds if seconds is not None else float('nan'):>10.2f}{ratio}  {note}")
    parts = []
    if nm:
        ratio = best_analysis / nm
        parts.append(f"interpkit ELF analysis {best_analysis:.2f} s = {ratio:.2f}x nm -D {nm:.2f} s "
                     f"(target <= 2.00: {'met' if ratio <= 2.0 else 'missed'}); command {command / nm:.2f}x nm -D")
    if readelf:
        parts.append(f"readelf {readelf:.2f} s")
    if wheel_rows:
        parts.append(f"on a wheel: interpkit {wheel_rows[1][1]:.2f} s vs auditwheel show {wheel_rows[0][1]:.2f} s "
                     f"({wheel_rows[1][1] / wheel_rows[0][1]:.2f}x)")
    print("summary: elf: " + "; ".join(parts))


SECTIONS = {"source": section_source, "elf": section_elf}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--limit", type=int, default=None, help="scan an even sample of this many files")
    parser.add_argument("--quick", action="store_true", help="one cold single-process run (filling the cache), then the warm run")
    parser.add_argument("--repeat", type=int, default=3, help="elf: best of this many runs per tool")
    parser.add_argument("--tools-venv", type=Path, help="elf: a venv holding abi3audit and auditwheel "
                        "(default: look on PATH; skipped with the reason when missing)")
    args = parser.parse_args()
    for name in args.sections:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
