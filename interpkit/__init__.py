"""interpkit: find, verify and fix what breaks when extensions run in many interpreters of one process.

The one import name. Its subpackages live in the design card's top-level folders and are
mapped here by ``package-dir`` in pyproject.toml:

    interpkit.core      analyzer-independent bottom layer: findings, errors (core/ here)
    interpkit.native    the runtimes: namespaces, subinterpreters, the sandbox (native/)
    interpkit.analyzer  scan: ELF and source facts, rules, reports; verify, memory, trace (analyzer/)
    interpkit.serve     `interpkit run`: a torch.package archive served by N interpreters (serve/)
    interpkit.shims     patch: relink, per-interpreter copies, rebuild, wheel repair (shims/)
    interpkit.cli       the command line; interpkit.commands holds one module per subcommand
"""
from __future__ import annotations

import os as _os

# From a source checkout that is only on sys.path (another Python without interpkit installed,
# e.g. a 3.13 child that imports interpkit.shims.private_copy), the subpackages are the sibling
# folders; an installed copy (regular or editable) already finds them, and this adds nothing.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "native")) and all(
        _os.path.isfile(_os.path.join(_checkout, folder, "__init__.py")) for folder in ("analyzer", "native", "shims")):
    __path__.append(_checkout)  # noqa: F821 (a package's own __path__)

from interpkit.core.version import VERSION as __version__  # noqa: E402

from interpkit.core.findings import Backend, FileKind, FileResult, Finding, Report, Severity, Verdict  # noqa: E402

__all__ = ["Backend", "FileKind", "FileResult", "Finding", "Report", "Severity", "Verdict", "scan"]


def scan(paths, config=None, *, progress=False):
    """Scan files, directories, wheels or model sources; returns a Report."""
    from interpkit.analyzer.scan import scan_paths

    return scan_paths(paths, config, progress=progress)
