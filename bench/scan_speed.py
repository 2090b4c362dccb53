"""How fast does interpkit scan? Prints side-by-side numbers; asserts nothing.

Sections (each a function taking the parsed args; add more below):
  site     `interpkit scan` of a whole site-packages (57 pinned popular distributions, built once
           by bench/site_env.py) cold and warm, side by side with `ruff check --select ALL
           --no-cache` and `bandit -r` on the same tree; peak memory of the scan's process tree
           on the whole tree and on a quarter of it; findings compared with --reference.
  source   the model-source analyzer over the installed torch package's Python files:
           cold (no cache, 1 and 2 worker processes) and warm (cache hit), files/second.
  elf      interpkit's ELF scan of torch's shared objects vs `nm -D` / `readelf --dyn-syms`
           on the same files, `abi3audit` on the extension modules and `auditwheel show`
           on a wheel of them (each skipped with the reason when not installed).

    python bench/scan_speed.py                 # every section
    python bench/scan_speed.py site --reference before.json   # and compare findings with a saved report
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
PACKAGE_FOLDERS = ("interpkit", "analyzer", "core", "native", "serve", "shims")   # pyproject's package-dir


def byte_compile_interpkit() -> str:
    """Write interpkit's .pyc files (into the checkout's ignored __pycache__ folders), as
    `pip install` does for an installed copy: with PYTHONDONTWRITEBYTECODE set (it is on the
    machine the results were measured on) every process would otherwise compile every module
    it imports from source, ~0.2 CPU-s per worker, a cost no installed interpkit pays."""
    import compileall

    ok = all(compileall.compile_dir(str(REPO_ROOT / folder), quiet=2, workers=1)
             for folder in PACKAGE_FOLDERS if (REPO_ROOT / folder).is_dir())
    return "interpkit byte-compiled as pip install does" if ok else "byte-compiling interpkit failed: modules compile per process"
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
    from interpkit.analyzer.source.batch import analyze_source_files
    from interpkit.analyzer.source.walk import source_rules

    files = _torch_sources(args.limit)
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    from interpkit.analyzer.source.walk import analyze_file

    rules = source_rules(Config())
    triggered = sum(1 for f in files if any(r.triggered(f.read_text(errors="replace")) for r in rules))
    libcst = sum(analyze_file(f, Config(), rules=rules).used_libcst for f in files)
    print(f"## source: {len(files)} torch .py files, {size_mb:.1f} MB; "
          f"{triggered} ({100 * triggered / len(files):.0f}%) contain a rule trigger (the rest stop at the text); "
          f"{libcst} go through LibCST (a name the ast pass cannot decide), the others through the ast visitors")
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


# ---------------------------------------------------------------------------- site

def _tree_rss_kib(pid: int) -> tuple[int, int]:
    """Resident memory (KiB) of a process and of all its descendants (the scan's worker
    processes, the export check's child), as (the process itself, the descendants together)."""
    own = total = 0
    stack, seen = [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/status") as fh:
                rss = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
            total += rss
            if current == pid:
                own = rss
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    stack.extend(int(child) for child in fh.read().split())
        except (OSError, ValueError):
            continue
    return own, total - own


class Peak:
    """Peak resident KiB of a scan: its process tree at one instant, the main process alone, and
    its descendants together (each maximum taken on its own, so tree <= main + others)."""

    def __init__(self) -> None:
        self.tree = self.main = self.others = 0

    def sample(self, pid: int) -> None:
        own, rest = _tree_rss_kib(pid)
        self.tree = max(self.tree, own + rest)
        self.main = max(self.main, own)
        self.others = max(self.others, rest)

    def __bool__(self) -> bool:
        return self.tree > 0

    def note(self) -> str:
        return f"main process {self.main / 1024:.0f} MiB, workers/children {self.others / 1024:.0f} MiB"


def _run_sampled(argv: list[str], env: dict | None = None) -> tuple[float, Peak, int]:
    """(wall seconds, peak resident memory of the process tree, exit status), sampled every 50 ms."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    peak = Peak()
    while proc.poll() is None:
        peak.sample(proc.pid)
        time.sleep(0.05)
    return time.perf_counter() - started, peak, proc.returncode


def _normalised(report: dict) -> dict:
    """A report without what changes between runs: timings, the archive size, the tool block."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in ("seconds", "export_seconds", "archive_bytes", "tool")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(report)


def _compare(reference: Path, report: Path) -> str:
    before, after = (_normalised(json.loads(p.read_text())) for p in (reference, report))
    if before == after:
        return "identical to the reference (timings excluded)"
    old = {f["path"]: f for f in before.get("files", [])}
    new = {f["path"]: f for f in after.get("files", [])}
    changed = sorted(p for p in old.keys() & new.keys() if old[p] != new[p])
    parts = [f"{len(changed)} file entries differ", f"{len(old.keys() - new.keys())} only before",
             f"{len(new.keys() - old.keys())} only after"]
    parts += [f"`{k}` differs" for k in sorted(before.keys() | after.keys())
              if k != "files" and before.get(k) != after.get(k)]
    kinds = Counter(new[p]["kind"] for p in changed)

    def without_data(entry: dict) -> dict:   # Finding.data (issue 12) is new since older reports
        return {**entry, "findings": [{k: v for k, v in f.items() if k != "data"} for f in entry.get("findings", [])]}

    python = [p for p in old.keys() & new.keys() if old[p]["kind"] == "python" or new[p]["kind"] == "python"]
    python_changed = sum(1 for p in python if without_data(old[p]) != without_data(new[p]))
    graph = ("import graph nodes and edges identical" if
             {k: v for k, v in before.get("imports", {}).items() if k != "op_libraries"}
             == {k: v for k, v in after.get("imports", {}).items() if k != "op_libraries"}
             else "import graph differs")
    return ("; ".join(parts) + (f" (changed entries by kind: {dict(kinds)})" if changed else "")
            + f"; Python entries without finding data: {python_changed} of {len(python)} differ; {graph}")


def _quarter_of(site: Path) -> list[Path]:
    """Every fourth top-level entry of site-packages: the same kind of code, a quarter of the
    files, for the memory-versus-size row (named on the command line, as a user would)."""
    return sorted(site.iterdir())[::4]


def section_site(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from site_env import bench_site, tools_venv

    site, tools = bench_site(), tools_venv()
    print(byte_compile_interpkit())
    py_files = list(site.rglob("*.py"))
    size_mb = sum(f.stat().st_size for f in py_files) / 1e6
    elf = sum(1 for f in site.rglob("*.so*") if f.is_file() and not f.is_symlink())
    print(f"## site: {site}\n{len(py_files)} .py files ({size_mb:.0f} MB), {elf} ELF files; "
          f"{os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("INTERPKIT_NO_CACHE", None)
    ruff = [str(tools / "bin" / "ruff"), "check", "--select", "ALL", "--no-cache", "--exit-zero", "-q", str(site)]
    print(f"{'tool':<42}{'seconds':>9}{'vs ruff':>9}{'peak MiB':>10}  notes", flush=True)

    def row(label: str, seconds: float, peak: Peak | None, note: str) -> None:
        mib = f"{peak.tree / 1024:.0f}" if peak else ""
        note = f"{note}; {peak.note()}" if peak else note
        print(f"{label:<42}{seconds:>9.1f}{seconds / ruff_s:>8.2f}x{mib:>10}  {note}", flush=True)

    with tempfile.TemporaryDirectory(prefix="interpkit-bench-") as work:
        report = Path(work) / "report.json"
        scan = [sys.executable, "-m", "interpkit", "scan", "--format", "json", "-o", str(report), str(site)]
        cold = ruff_s = float("inf")
        cold_peak, status = Peak(), 0
        for round_ in range(args.repeat):   # interleaved, so both see the same machine
            ruff_s = min(ruff_s, _run_sampled(ruff)[0])
            cache = Path(work) / f"cache-{round_}"
            seconds, peak, status = _run_sampled(scan, dict(env, INTERPKIT_CACHE_DIR=str(cache)))
            if seconds < cold:
                cold, cold_peak = seconds, peak
        row("ruff check --select ALL --no-cache", ruff_s, None, "all cores (threads)")
        row("interpkit scan, cold (empty cache)", cold, cold_peak,
            f"exit {status}; report {report.stat().st_size / 1e6:.1f} MB")
        warm, warm_peak, _ = min((_run_sampled(scan, dict(env, INTERPKIT_CACHE_DIR=str(cache)))
                                  for _ in range(max(args.repeat, 2))), key=lambda run: run[0])
        row("interpkit scan, warm (same tree again)", warm, warm_peak, "target <= 3 s")
        comparison = _compare(args.reference, report) if args.reference else "no --reference given"
        print(f"findings: {comparison}", flush=True)
        quarter = _quarter_of(site)
        quarter_files = sum(1 for q in quarter for _ in ([q] if q.suffix == ".py" else q.rglob("*.py")))
        q_report = Path(work) / "quarter.json"
        q_seconds, q_peak, _ = _run_sampled(
            [sys.executable, "-m", "interpkit", "scan", "--format", "json", "-o", str(q_report), *map(str, quarter)],
            dict(env, INTERPKIT_CACHE_DIR=str(Path(work) / "cache-quarter")))
        q_report_mb = q_report.stat().st_size / 1e6 if q_report.exists() else float("nan")
        row("interpkit scan, cold, quarter of the tree", q_seconds, q_peak,
            f"{quarter_files} .py files; report {q_report_mb:.1f} MB")
        bandit = None
        if not args.skip_bandit:
            bandit = _run_sampled([str(tools / "bin" / "bandit"), "-r", "-q", "-f", "json", "-o", os.devnull,
                                   str(site)])[0]
            row("bandit -r", bandit, None, "one process")
    print(f"summary: site: interpkit cold {cold:.1f} s = {cold / ruff_s:.2f}x ruff {ruff_s:.1f} s "
          f"(target <= 1.00: {'met' if cold <= ruff_s else 'missed'}); warm {warm:.2f} s "
          f"(target <= 3 s: {'met' if warm <= 3 else 'missed'}); peak {cold_peak.tree / 1024:.0f} MiB for "
          f"{len(py_files)} files vs {q_peak.tree / 1024:.0f} MiB for {quarter_files} (main process "
          f"{cold_peak.main / 1024:.0f} vs {q_peak.main / 1024:.0f} MiB, workers/children "
          f"{cold_peak.others / 1024:.0f} vs {q_peak.others / 1024:.0f} MiB)"
          + (f"; bandit {bandit:.0f} s" if bandit is not None else "")
          + f"; load average {os.getloadavg()[0]:.2f}")


SECTIONS = {"site": section_site, "source": section_source, "elf": section_elf}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--limit", type=int, default=None, help="scan an even sample of this many files")
    parser.add_argument("--quick", action="store_true", help="one cold single-process run (filling the cache), then the warm run")
    parser.add_argument("--repeat", type=int, default=3, help="elf: best of this many runs per tool")
    parser.add_argument("--tools-venv", type=Path, help="elf: a venv holding abi3audit and auditwheel "
                        "(default: look on PATH; skipped with the reason when missing)")
    parser.add_argument("--reference", type=Path, help="site: a saved `interpkit scan --format json` report "
                        "of the same tree to compare findings with (timings excluded)")
    parser.add_argument("--skip-bandit", action="store_true", help="site: leave out bandit (minutes)")
    args = parser.parse_args()
    if "site" in args.sections and "--repeat" not in sys.argv:
        args.repeat = 1
    for name in args.sections:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
