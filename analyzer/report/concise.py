"""One line per finding, as ruff's `--output-format concise` prints them (editors and grep read it).

    path:line:col: CODE message           (Python source; `path:line: ...` when the column is unknown)
    path: CODE message [symbol]           (ELF files: no lines, the symbol instead)
    path: error: why it cannot be read    (unreadable input)

then a summary line (left out with --quiet).
"""
from __future__ import annotations

from interpkit.core.findings import FileKind, Finding, Report


def finding_line(f: Finding) -> str:
    message = f.message.replace("\n", " ")  # one finding, one line, whatever the rule wrote
    if f.line is not None:
        where = f"{f.path}:{f.line}:{f.column}:" if f.column is not None else f"{f.path}:{f.line}:"
        return f"{where} {f.code} {message}"
    symbol = f" [{f.symbol}]" if f.symbol else ""
    return f"{f.path}: {f.code} {message}{symbol}"


def lines(report: Report) -> list[str]:
    out: list[str] = []
    for fr in report.files:
        if fr.kind is FileKind.ERROR:
            out.append(f"{fr.path}: error: {(fr.error or 'unreadable').replace(chr(10), ' ')}")
            continue
        for f in sorted(fr.findings, key=lambda f: (f.line or 0, f.column or 0, f.code, f.symbol or "")):
            out.append(finding_line(f))
    return out


def render(report: Report, *, quiet: bool = False) -> str:
    from interpkit.analyzer.report.table import summary_line

    out = lines(report)
    if not quiet:
        out.append(summary_line(report).plain)
    return "".join(line + "\n" for line in out)
