"""The terminal view: one rich table per file, then a summary line."""
from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from interpkit.core.findings import Backend, FileKind, Report, Severity, Verdict

_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_VERDICT_STYLE = {Verdict.OK: "green", Verdict.FAIL: "red", Verdict.UNKNOWN: "yellow"}


def _verdict_text(fr) -> Text:
    text = Text()
    for i, backend in enumerate(Backend):
        verdict = fr.verdicts.get(backend, Verdict.UNKNOWN)
        if i:
            text.append("  ")
        text.append(f"{backend.value}=", style="dim")
        text.append(verdict.value, style=_VERDICT_STYLE[verdict])
    return text


def _location(f) -> str:
    if f.line is not None:
        return f"{f.line}:{f.column}" if f.column is not None else str(f.line)
    return f.symbol or ""


def render_report(report: Report, console: Console, *, show_clean: bool = False) -> None:
    for fr in report.files:
        if fr.kind is FileKind.ERROR:
            console.print(Text.assemble(("error ", "bold red"), (str(fr.path), "bold"), f": {fr.error}"))
            continue
        if not fr.findings and not show_clean:
            continue
        title = Text.assemble((str(fr.path), "bold"), f"  [{fr.kind.value}", f" {fr.module}" if fr.module else "", "]")
        table = Table(show_header=True, header_style="bold", expand=False, title_justify="left", box=None, pad_edge=False)
        table.add_column("code", no_wrap=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("where", overflow="fold", max_width=40)
        table.add_column("message", overflow="fold")
        table.add_column("fix", overflow="fold", style="dim")
        for f in sorted(fr.findings, key=lambda f: (-f.severity, f.code, f.line or 0)):
            message = f.message + (f"\n  via {' → '.join(f.chain)}" if f.chain else "")
            table.add_row(f.code, Text(f.severity.label, style=_SEVERITY_STYLE[f.severity]),
                          _location(f), message, f.fix or "")
        parts = [title, table]
        if fr.kind in (FileKind.EXTENSION, FileKind.LIBRARY):
            parts.append(Text.assemble(("  verdicts: ", "dim"), _verdict_text(fr)))
        console.print(Group(*parts))
        console.print()
    console.print(summary_line(report))


def summary_line(report: Report) -> Text:
    s = report.summary()
    sev = s["by_severity"]
    text = Text.assemble(
        ("Scanned ", ""), (f"{s['files']} files", "bold"), ": ",
        (f"{sev['error']} errors", "bold red" if sev["error"] else "green"), ", ",
        (f"{sev['warning']} warnings", "yellow" if sev["warning"] else ""), ", ",
        f"{sev['info']} info",
    )
    if s["errors"]:
        text.append(f", {s['errors']} unreadable", style="bold red")
    exts = s["kinds"].get("extension", 0)
    if exts:
        ok = {b: s["extension_verdicts"][b]["ok"] for b in s["extension_verdicts"]}
        text.append("; extensions ok: " + ", ".join(f"{b} {ok[b]}/{exts}" for b in ok))
    return text
