"""Named errors: each carries a one-line message the CLI prints as-is."""
from __future__ import annotations


class InterpkitError(Exception):
    """Base class; str(err) is the one-line message."""

    exit_code = 1


class InputError(InterpkitError):
    """Bad command line or a path that cannot be used at all: exit 2."""

    exit_code = 2


class FileFormatError(InterpkitError):
    """One file cannot be read as what it claims to be; becomes a kind=error entry."""


class RuntimeUnavailable(InterpkitError):
    """A runtime or interpreter is absent here; callers skip with this reason."""


class ArchiveError(FileFormatError):
    """A wheel or torch.package archive is malformed or hostile (zip-slip, bomb, bad RECORD)."""
