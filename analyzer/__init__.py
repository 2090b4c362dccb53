"""interpkit: find, verify and fix what breaks when extensions run in many interpreters of one process."""
from __future__ import annotations

__version__ = "0.1.0"

from analyzer.findings import Backend, FileKind, FileResult, Finding, Report, Severity, Verdict  # noqa: E402

__all__ = ["Backend", "FileKind", "FileResult", "Finding", "Report", "Severity", "Verdict", "scan"]


def scan(paths, config=None, *, progress=False):
    """Scan files, directories, wheels or model sources; returns a Report."""
    from analyzer.scan import scan_paths

    return scan_paths(paths, config, progress=progress)
