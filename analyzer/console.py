"""The shared rich consoles and progress: data to stdout, progress and diagnostics to stderr (NO_COLOR honoured).

On a terminal the consoles use its real width. Piped or redirected output has no width of
its own; rich would squeeze it to 80 columns and fold paths and symbols over several lines,
which breaks `grep` and copy-and-paste. There the width is wide enough that a table row is
never folded (as ruff and grep print: one long line is fine in a file or a pipe).
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from functools import cache
from typing import Callable, Iterator

from rich.console import Console

# Wide enough for any report row; rich only pads tables to their own natural width.
UNBOUNDED_WIDTH = 4096
# How often the plain-text progress fallback prints a line on a non-terminal stderr.
PLAIN_PROGRESS_INTERVAL_S = 5.0


def _width_for(stream) -> int | None:
    """None (rich's own choice: the terminal's width, or COLUMNS) on a terminal, else unbounded."""
    return None if _isatty(stream) else UNBOUNDED_WIDTH


def make_console(stream=None, *, stderr: bool = False, width: int | None = None) -> Console:
    """A console for `stream` (stdout by default) that follows the width policy above."""
    target = stream if stream is not None else (sys.stderr if stderr else sys.stdout)
    chosen = width if width is not None else _width_for(target)
    if chosen == UNBOUNDED_WIDTH:
        # rich pads every table cell to its column's width; in a file that is trailing blanks.
        # The default stream is looked up at each write: the cached consoles outlive a
        # redirected sys.stdout/sys.stderr (pytest's capture, contextlib.redirect_stdout).
        current = stream if stream is not None else (lambda: sys.stderr if stderr else sys.stdout)
        return Console(file=_TrailingBlankStripper(current), highlight=False, soft_wrap=False, width=chosen)
    return Console(file=stream, stderr=stderr, highlight=False, soft_wrap=False, width=chosen)


class _TrailingBlankStripper:
    """A text stream that drops the blanks at the end of each complete line it passes on."""

    def __init__(self, stream) -> None:
        self._given = stream      # a text stream, or a function that returns the current one
        self._pending = ""

    @property
    def _stream(self):
        return self._given() if callable(self._given) else self._given

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        if lines:
            self._stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(self._pending)
            self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"


@cache
def out_console() -> Console:
    return make_console()


@cache
def err_console() -> Console:
    return make_console(stderr=True)


def file_console(buffer) -> Console:
    """A colourless console writing a report into a file (`-o FILE`): never folded."""
    return Console(file=_TrailingBlankStripper(buffer), width=UNBOUNDED_WIDTH, no_color=True, highlight=False,
                   soft_wrap=False, color_system=None)


# -- quiet mode -----------------------------------------------------------------------------------

_quiet = False


def set_quiet(quiet: bool) -> None:
    """-q/--quiet: findings only; no progress, no summaries or notes (set once by the CLI)."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


# -- progress -------------------------------------------------------------------------------------

Advance = Callable[..., None]


@contextmanager
def progress(label: str, total: int | None = None, *, enabled: bool | None = None,
             interval_s: float = PLAIN_PROGRESS_INTERVAL_S, stream=None) -> Iterator[Advance]:
    """Progress of one phase on stderr; yields ``advance(steps=1, *, total=None, label=None)``.

    A rich bar on a terminal; otherwise one plain line (`label: done/total (elapsed)`) at most
    every `interval_s` seconds, so a long run in CI or a log shows it is alive and short runs
    print nothing. `enabled=False` (or --quiet) yields a no-op.
    """
    target = stream if stream is not None else sys.stderr
    if enabled is False or _quiet:
        yield _noop
        return
    is_tty = _isatty(target)
    if is_tty and stream is None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console(), transient=True) as bar:
            task = bar.add_task(label, total=total)

            def advance_bar(steps: int = 1, *, total: int | None = None, label: str | None = None) -> None:
                bar.update(task, advance=steps, **({"total": total} if total is not None else {}),
                           **({"description": label} if label is not None else {}))

            yield advance_bar
        return
    plain = _PlainProgress(label, total, interval_s, target)
    yield plain.advance


def _noop(*_args, **_kwargs) -> None:
    return None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _PlainProgress:
    """Counts steps; prints one line when at least interval_s passed since the last one (or the start)."""

    def __init__(self, label: str, total: int | None, interval_s: float, stream) -> None:
        self.label, self.total, self.interval_s, self.stream = label, total, interval_s, stream
        self.done = 0
        self.started = self.last = time.monotonic()

    def advance(self, steps: int = 1, *, total: int | None = None, label: str | None = None) -> None:
        self.done += steps
        if total is not None:
            self.total = total
        if label is not None:
            self.label = label
        now = time.monotonic()
        if now - self.last >= self.interval_s:
            self.last = now
            of = f"/{self.total}" if self.total is not None else ""
            try:
                print(f"{self.label}: {self.done}{of} ({now - self.started:.0f}s)", file=self.stream, flush=True)
            except (OSError, ValueError):
                pass  # a closed stderr must not end the scan
