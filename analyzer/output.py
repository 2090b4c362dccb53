"""Shared output plumbing for subcommands: formats, atomic -o files, exit status."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.core.findings import Report, Severity


def add_output_arguments(parser: argparse.ArgumentParser, formats=("table", "json", "sarif")) -> None:
    parser.add_argument("--format", "-f", choices=formats, default=formats[0], help="output format (default: %(default)s)")
    parser.add_argument("--output", "-o", metavar="FILE", type=Path, help="write the report to FILE instead of stdout")


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--select", type=_codes, metavar="CODES", help="comma-separated rule codes or prefixes to enable (e.g. IK1,IK203)")
    parser.add_argument("--ignore", type=_codes, metavar="CODES", help="comma-separated rule codes or prefixes to disable")
    parser.add_argument("--fail-on", choices=("error", "warning", "info"), help="exit 1 when a finding is at or above this severity (default: error)")
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


def _codes(text: str) -> tuple[str, ...]:
    return tuple(c.strip().upper() for c in text.split(",") if c.strip())


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers see all or nothing."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write {path} (no such directory {folder})")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def emit(text: str, output: Path | None) -> None:
    if output is None:
        import sys

        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(output, text)


def exit_status(report: Report, fail_on: Severity) -> int:
    worst = report.max_severity()
    if worst is not None and worst >= fail_on:
        return 1
    if any(fr.error for fr in report.files):
        return 1
    return 0
