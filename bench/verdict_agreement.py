"""Static subinterpreters verdict against CPython's own isolated import, on the real-wheel corpora.

    python bench/verdict_agreement.py --python 3.14=/path/to/python3.14 [--python 3.15=...] [--fresh]

For each version: the corpus of fixtures/wheel_corpus.py (built once, cached by content hash),
CPython's answer for every extension module (each imported from its file, created and executed,
in an isolated interpreter of its own child process, so a crash costs one row), and the
analyzer's verdict now. The
observations are cached beside the corpus (they depend only on the wheels and the Python), so
re-running after an analyzer change costs only the static scan; --fresh probes again.
Prints one table row per version (the numbers bench/RESULTS.md records) and every disagreement.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fixtures.corpus_agreement import compare, observe  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, metavar="VERSION=PATH")
    parser.add_argument("--fresh", action="store_true", help="probe again instead of reusing the observations")
    args = parser.parse_args(argv)
    print("| Python | wheels | modules compared | agree | wrong | unknown | refused by CPython |")
    print("|---|---|---|---|---|---|---|")
    details = []
    for item in args.python:
        version, _, python = item.partition("=")
        row = compare(version, observe(version, python or version, fresh=args.fresh))
        print(f"| {version} | {row['wheels']} | {row['compared']} | {row['agreed']} ({row['agreement']:.1%}) "
              f"| {row['wrong']} | {row['unknown']} | {row['refused']} |", flush=True)
        details.append(row)
    for row in details:
        for r in row["disagreements"]:
            print(f"{row['version']} differs: {r['module']} predicted {r['predicted']} observed {r['observed']} "
                  f"({r['status']}) {r['codes']} {r['message'][:140]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
