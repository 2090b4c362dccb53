"""Shared output plumbing for subcommands: formats, atomic -o files, exit status."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.analyzer.report.export_check import export_check_failed
from interpkit.core.findings import Report, Severity


# One line per finding, as ruff's `--output-format concise` prints them.
CONCISE = "concise"


def add_output_arguments(parser: argparse.ArgumentParser, formats=("table", "json", "sarif"), *,
                         output: bool = True) -> None:
    """--format/--output-format/-f, -o/--output FILE (unless the command uses -o otherwise), -q/--quiet."""
    parser.add_argument("--format", "--output-format", "-f", dest="format", choices=formats, default=formats[0],
                        help=f"output format: {', '.join(formats)} (default: %(default)s)")
    if output:
        parser.add_argument("--output", "-o", metavar="FILE", type=Path,
                            help="write the report to FILE instead of stdout (atomically)")
    add_quiet_argument(parser)


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print the findings (or results) only: no progress, notes or summary")


def add_exit_zero_argument(parser: argparse.ArgumentParser, what: str = "findings") -> None:
    parser.add_argument("--exit-zero", action="store_true",
                        help=f"exit 0 even when there are {what} (a bad command line or unusable input still exits 2)")


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--select", type=rule_codes, metavar="CODES",
                        help="comma-separated rule codes or prefixes to enable (e.g. IK1,IK203; ALL for every rule)")
    parser.add_argument("--ignore", type=rule_codes, metavar="CODES", help="comma-separated rule codes or prefixes to disable")
    parser.add_argument("--fail-on", choices=("error", "warning", "info"),
                        help="exit 1 when a finding is at or above this severity (default: error)")
    parser.add_argument("--config", type=Path, metavar="PYPROJECT", help="read [tool.interpkit] from this file (default: nearest pyproject.toml)")


def positive_int(text: str) -> int:
    """argparse type for counts (interpreters, requests): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_seconds(text: str) -> float:
    """argparse type for time limits: a finite number of seconds above 0 (0 would call every probe a hang)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return value


def check_namespace_count(count: int, option: str = "--interpreters") -> None:
    """A count the namespaces runtime can never start is a bad command line (exit 2), refused before any work."""
    from interpkit.native.limits import NAMESPACE_CEILING

    if count > NAMESPACE_CEILING:
        raise InputError(f"cannot use {option} {count} with the namespaces backend (glibc allows at most "
                         f"{NAMESPACE_CEILING} namespaced interpreters per process)")


def require_paths(paths, verb: str) -> None:
    """A path that does not exist is a bad command line (exit 2), named with the command's verb."""
    for path in paths:
        if not os.path.lexists(path):
            raise InputError(f"cannot {verb} {path} (no such file or directory)")


def unknown_rule_codes(codes) -> list[str]:
    """The codes or prefixes that select no rule at all (ALL, IK, IK2, IK203 are fine)."""
    from interpkit.analyzer.registry import REMOVED_CODES, declared_codes

    known = list(declared_codes()) + list(REMOVED_CODES)
    return [c for c in codes if c.upper() != "ALL" and not any(k.startswith(c.upper()) for k in known)]


def rule_codes(text: str) -> tuple[str, ...]:
    codes = tuple(c.strip().upper() for c in text.split(",") if c.strip())
    unknown = unknown_rule_codes(codes)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rule code {', '.join(unknown)} (`interpkit rules` lists them)")
    return codes


def exit_status(report: Report, fail_on: Severity) -> int:
    """1 for a finding at or above fail_on or an unreadable file, else 0."""
    worst = report.max_severity()
    if worst is not None and worst >= fail_on:
        return 1
    if any(fr.error for fr in report.files):
        return 1
    if export_check_failed(report):
        return 1
    return 0
