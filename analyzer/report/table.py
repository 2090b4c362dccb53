"""The terminal view: one rich table per file, the torch.package plan, then a summary line.

On a terminal long cells fold to its width; anywhere else the console is unbounded (see
analyzer/console.py) and no cell is ever broken, so a path or symbol stays one word for grep.
"""
from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from interpkit.core.findings import Backend, FileKind, Report, Severity, Verdict

_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_VERDICT_STYLE = {Verdict.OK: "green", Verdict.FAIL: "red", Verdict.UNKNOWN: "yellow", Verdict.NOT_APPLICABLE: "dim"}


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """`1 error`, `2 errors`, `0 files` (English plurals for summary lines)."""
    return f"{count} {noun if count == 1 else (plural_noun or noun + 's')}"


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


def findings_table(console: Console, *, chains: bool = False) -> Table:
    """The column layout shared by scan's per-file tables (a last `via` column when a finding has an import chain)."""
    terminal = console.is_terminal
    table = Table(show_header=True, header_style="bold", expand=False, title_justify="left", box=None, pad_edge=False)
    table.add_column("code", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    # A symbol is one word: on a terminal it may fold to fit; elsewhere it is never cut.
    table.add_column("where", overflow="fold", max_width=40 if terminal else None, no_wrap=not terminal)
    table.add_column("message", overflow="fold")
    table.add_column("fix", overflow="fold", style="dim")
    if chains:
        table.add_column("via", overflow="fold", style="dim")
    return table


def render_report(report: Report, console: Console, *, show_clean: bool = False, quiet: bool = False) -> None:
    console.print(ReportView(report, show_clean=show_clean, quiet=quiet))


class ReportView:
    """The scan report's rich rendering (the JSON one is ``Report.to_json``): per-file tables,
    then (unless quiet) the packaging plan, traces and the summary line."""

    def __init__(self, report: Report, *, show_clean: bool = False, quiet: bool = False) -> None:
        self.report, self.show_clean, self.quiet = report, show_clean, quiet

    def __rich_console__(self, console, options):
        yield from _renderables(self.report, console, show_clean=self.show_clean, quiet=self.quiet)


def _renderables(report: Report, console: Console, *, show_clean: bool, quiet: bool):
    for fr in report.files:
        if fr.kind is FileKind.ERROR:
            yield Text.assemble(("error ", "bold red"), (str(fr.path), "bold"), f": {fr.error}")
            continue
        if not fr.findings and not show_clean:
            continue
        title = Text.assemble((str(fr.path), "bold"), f"  [{fr.kind.value}", f" {fr.module}" if fr.module else "", "]")
        chains = any(f.chain for f in fr.findings)
        table = findings_table(console, chains=chains)
        for f in sorted(fr.findings, key=lambda f: (-f.severity, f.code, f.line or 0)):
            cells = [f.code, Text(f.severity.label, style=_SEVERITY_STYLE[f.severity]), _location(f), f.message, f.fix or ""]
            table.add_row(*cells, *([" → ".join(f.chain)] if chains else []))
        parts = [title, table]
        if fr.kind in (FileKind.EXTENSION, FileKind.LIBRARY) and not quiet:
            parts.append(Text.assemble(("  verdicts: ", "dim"), _verdict_text(fr)))
        yield Group(*parts)
        yield Text()
    if quiet:
        return
    plan = report.extras.get("packaging_plan")
    if plan:
        yield packaging_plan(plan)
        yield Text()
    for trace in report.extras.get("trace") or ():
        # scan --trace: what only running the model loaded (the files are in the tables above)
        only = trace.get("extensions_only_in_trace") or []
        state = Text("ok", style="green") if trace.get("ok") else Text(f"failed ({trace.get('error')})", style="bold red")
        yield Text.assemble(("trace ", "bold"), trace["target"], ": ", state,
                            f"; {plural(len(only), 'extension')} only in the trace",
                            (f": {', '.join(only)}" if only else ""))
    target = report.extras.get("target_python")
    if target:
        # the tree is built for another Python: its imports were resolved against that one's files
        where = target["executable"] or f"none found: {target.get('reason', '')}"
        yield Text.assemble(("judged for ", "bold"), f"CPython {target['version']} ({where}; from {target['found_by']})")
    yield summary_line(report)


def packaging_plan(plan: dict) -> Group:
    """The torch.package plan (intern / extern / mock) and whether a real export of it worked."""
    rows = Table(show_header=False, box=None, pad_edge=False, expand=False)
    rows.add_column("action", style="bold", no_wrap=True)
    rows.add_column("count", justify="right", no_wrap=True)
    rows.add_column("modules", overflow="fold")
    reasons = plan.get("reasons", {})
    for action in ("intern", "extern", "mock"):
        patterns = [p for p in plan.get(action, []) if not p.endswith(".**")]
        if action == "mock":
            shown = ", ".join(f"{p} ({reasons[p]})" if p in reasons else p for p in patterns)
        else:
            shown = ", ".join(patterns)
        rows.add_row(action, str(len(patterns)), shown or "-")
    rows.add_row("save", str(len(plan.get("save_modules", []))), ", ".join(plan.get("save_modules", [])) or "-")
    title = Text("torch.package plan", style="bold")
    check = plan.get("export_check") or {}
    if not check.get("ran"):
        verdict = Text(f"export check: not run ({check.get('reason', 'unknown reason')})", style="yellow")
    elif check.get("ok") and check.get("loads"):
        what = f"the model {check['model']}() ({check.get('model_type')})" if check.get("model") else "the modules"
        verdict = Text(f"export check: exported {what} and imported back in {check.get('seconds', 0):g} s",
                       style="yellow" if check.get("reason") else "green")
        if check.get("reason"):
            verdict.append(f" ({check['reason']})")
    else:
        stage = "exported, but importing it back failed" if check.get("ok") else "export failed"
        verdict = Text(f"export check: {stage} ({check.get('reason', 'no reason given')})", style="bold red")
    return Group(title, rows, verdict, Text("(--format json has the exporter snippet)", style="dim"))


def summary_line(report: Report) -> Text:
    s = report.summary()
    sev = s["by_severity"]
    text = Text.assemble(
        ("Scanned ", ""), (plural(s["files"], "file"), "bold"), ": ",
        (plural(sev["error"], "error"), "bold red" if sev["error"] else "green"), ", ",
        (plural(sev["warning"], "warning"), "yellow" if sev["warning"] else ""), ", ",
        f"{sev['info']} info",
    )
    if s["errors"]:
        text.append(f", {s['errors']} unreadable", style="bold red")
    from interpkit.analyzer.report.export_check import export_check_failed

    if export_check_failed(report):
        text.append(", export check failed", style="bold red")
    exts = s["kinds"].get("extension", 0)
    if exts:
        ok = {b: s["extension_verdicts"][b]["ok"] for b in s["extension_verdicts"]}
        text.append("; extensions ok: " + ", ".join(f"{b} {ok[b]}/{exts}" for b in ok))
    return text
