"""The progress API of analyzer/console.py: a rich bar on a terminal, plain lines elsewhere, nothing when quiet."""
from __future__ import annotations

import io

from interpkit.analyzer import console


def test_plain_progress_prints_done_of_total_lines_off_a_terminal():
    stream = io.StringIO()
    with console.progress("scanning python", total=3, interval_s=0, stream=stream) as advance:
        for _ in range(3):
            advance()
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["scanning python: 1/3", "scanning python: 2/3",
                                                       "scanning python: 3/3"]


def test_plain_progress_waits_for_its_interval():
    stream = io.StringIO()
    with console.progress("scanning", total=1000, interval_s=3600, stream=stream) as advance:
        for _ in range(1000):
            advance()
    assert stream.getvalue() == ""  # a short run prints nothing


def test_progress_phase_label_and_total_can_change():
    stream = io.StringIO()
    with console.progress("reading", interval_s=0, stream=stream) as advance:
        advance()
        advance(2, total=10, label="analyzing")
    assert [line.split(" (")[0] for line in stream.getvalue().splitlines()] == ["reading: 1", "analyzing: 3/10"]


def test_quiet_or_disabled_progress_prints_nothing():
    stream = io.StringIO()
    with console.progress("x", total=2, enabled=False, interval_s=0, stream=stream) as advance:
        advance()
    console.set_quiet(True)
    try:
        with console.progress("x", total=2, interval_s=0, stream=stream) as advance:
            advance()
    finally:
        console.set_quiet(False)
    assert stream.getvalue() == ""


def test_piped_console_is_unbounded_and_strips_padding():
    buffer = io.StringIO()
    out = console.make_console(buffer)
    assert out.width == console.UNBOUNDED_WIDTH
    from rich.table import Table

    table = Table(box=None)
    table.add_column("a")
    table.add_column("b")
    table.add_row("x" * 300, "")
    table.add_row("y", "z")
    out.print(table)
    out.file.flush()
    lines = buffer.getvalue().splitlines()
    assert any("x" * 300 in line for line in lines) and all(line == line.rstrip() for line in lines)
