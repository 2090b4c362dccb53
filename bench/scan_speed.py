"""How fast does interpkit scan? Prints side-by-side numbers; asserts nothing.

Sections (each a function taking the parsed args; add more below, e.g. ELF vs `nm -D`):
  source   the model-source analyzer over the installed torch package's Python files:
           cold (no cache, 1 and 2 worker processes) and warm (cache hit), files/second.

    python bench/scan_speed.py                 # every section
    python bench/scan_speed.py source --limit 400
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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
    from analyzer.config import Config
    from analyzer.source.walk import analyze_source_files, source_rules

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


SECTIONS = {"source": section_source}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--limit", type=int, default=None, help="scan an even sample of this many files")
    parser.add_argument("--quick", action="store_true", help="one cold single-process run (filling the cache), then the warm run")
    args = parser.parse_args()
    for name in args.sections:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
