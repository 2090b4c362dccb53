"""`interpkit patch`: fix what can be fixed in new files, re-scan and re-verify them, say before -> after.

Exit status: 0 when every finding that affects a selected backend is fixed or handled at load
time; 1 when something stays unfixed (each with its reason) or, with --check, when a patch
would change anything; 2 for usage or input errors.
"""
from __future__ import annotations

from pathlib import Path

from interpkit.core.errors import FileFormatError, InputError
from interpkit.analyzer.output import add_exit_zero_argument, add_quiet_argument, positive_int, positive_seconds

BACKEND_CHOICES = ("namespaces", "subinterpreters", "copies", "all")


def configure_parser(sub) -> None:
    parser = sub.add_parser(
        "patch",
        help="repair extensions, wheels and source trees so they load per interpreter",
        description="Plan edits from the analyzer's findings (relink GNU_UNIQUE symbols, hide clashing exports, "
        "set libpython DT_NEEDED and RUNPATH, per-interpreter copies, rebuild sources with safe flags), apply them "
        "to copies in OUTDIR (inputs are never modified), then re-scan and re-verify the result.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="an extension or library, a folder, a wheel, an sdist or a source tree")
    parser.add_argument("-o", "--outdir", type=Path, metavar="OUTDIR", help="where the patched artifacts go")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a patch would change anything")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    parser.add_argument("--backend", action="append", choices=BACKEND_CHOICES, metavar="BACKEND",
                        help="runtime(s) to fix for: namespaces, subinterpreters, copies or all (default: all; repeatable)")
    parser.add_argument("--interpreters", "-n", type=positive_int, default=2, metavar="N",
                        help="interpreters per re-verification probe (default: 2; at most 15 with namespaces)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip loading the results in the real runtimes")
    parser.add_argument("--timeout", type=positive_seconds, default=60.0, metavar="SECONDS",
                        help="per-probe time limit (default: 60)")
    parser.add_argument("--format", "--output-format", "-f", dest="format", choices=("table", "json"), default="table",
                        help="table: per file, each finding's handling and result; json: the interpkit-patch/1 "
                        "report on stdout (default: table)")
    parser.add_argument("--report", type=Path, metavar="FILE", help="also write the JSON report to FILE (atomically)")
    add_quiet_argument(parser)
    add_exit_zero_argument(parser, "unfixed findings (or, with --check, changes)")
    parser.set_defaults(func=run)




def run(args) -> int:
    import json

    from interpkit.core.findings import Backend
    from interpkit.analyzer.output import check_namespace_count, emit, require_paths, write_atomic
    from interpkit.shims.apply import Options, patch_input

    if not (args.outdir or args.check or args.dry_run):
        raise InputError("cannot patch without -o OUTDIR (or use --dry-run / --check)")
    require_paths(args.paths, "patch")
    names = [p.name for p in args.paths]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"cannot patch two inputs named {duplicates[0]} into one folder")
    chosen = set(args.backend or ["all"])
    backends = frozenset(Backend) if "all" in chosen else frozenset(Backend(b) for b in chosen)
    if Backend.NAMESPACES in backends and args.verify and not (args.check or args.dry_run):
        check_namespace_count(args.interpreters)
    options = Options(backends=backends, interpreters=args.interpreters, check=args.check, dry_run=args.dry_run,
                      verify=args.verify and not (args.check or args.dry_run), timeout=args.timeout)
    if args.outdir and not (args.check or args.dry_run):
        try:
            args.outdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {args.outdir} ({exc.strerror})") from None
    try:
        outcomes = [patch_input(path, args.outdir, options) for path in args.paths]
    except FileFormatError as exc:
        # An input that cannot be read as what it claims to be cannot be patched at all: unusable input.
        raise InputError(str(exc)) from None
    for path, outcome in zip(args.paths, outcomes):
        if not outcome.files and not outcome.rebuild:
            raise InputError(f"cannot patch {path} (nothing to patch: no ELF files, wheels or buildable sources)")
    unfixed = sum(len(o.unfixed) for o in outcomes)
    would_change = sum(len(f.plan.binary_edits) for o in outcomes for f in o.files)
    summary = {"inputs": len(outcomes), "files": sum(len(o.files) for o in outcomes),
               "edits": would_change, "unfixed": unfixed,
               "fixed": sum(1 for o in outcomes for f in o.files for x in f.findings if x.after == "fixed")}
    data = {"schema": "interpkit-patch/1", "backends": sorted(b.value for b in backends),
            "interpreters": args.interpreters, "mode": "check" if args.check else "dry-run" if args.dry_run else "patch",
            "results": [o.to_json() for o in outcomes], "summary": summary}
    if args.report:
        write_atomic(args.report, json.dumps(data, indent=2) + "\n")
    if args.format == "json":
        emit(json.dumps(data, indent=2) + "\n", None)
    else:
        _render(outcomes, summary, args)
    if args.exit_zero:
        return 0
    if unfixed:
        return 1
    if args.check and would_change:
        return 1
    return 0


def _render(outcomes, summary, args) -> None:
    from rich.table import Table
    from rich.text import Text

    from interpkit.analyzer.console import out_console
    from interpkit.analyzer.report.table import plural

    console = out_console()
    style = {"fixed": "green", "would be fixed": "green", "handled at load time": "cyan", "not needed": "dim",
             "unfixable": "red", "remaining": "bold red"}
    for outcome in outcomes:
        title = f"{outcome.input} -> {outcome.output}" if outcome.output else f"{outcome.input} (nothing written)"
        console.print(Text(title, style="bold"))
        for note in outcome.notes:
            console.print(f"  {note}")
        for file in outcome.files:
            if not file.findings and not file.plan.edits:
                continue
            table = Table(title=file.relative, title_justify="left", show_edge=False)
            for column in ("code", "symbol", "handling", "after", "reason"):
                # off a terminal the width is unbounded: a symbol is never broken
                table.add_column(column, overflow="fold", no_wrap=column == "symbol" and not console.is_terminal)
            for item in file.findings:
                table.add_row(item.code, item.symbol or "", item.handling, Text(item.after, style.get(item.after, "")),
                              item.reason)
            console.print(table)
            for line in file.applied:
                console.print(f"  applied: {line}")
            verdicts = ", ".join(f"{b} {file.verdicts_before.get(b)} -> {file.verdicts_after.get(b)}"
                                 for b in sorted(file.verdicts_before))
            console.print(f"  verdicts: {verdicts}")
            for backend, entry in sorted(file.verify.items()):
                console.print(f"  verify {backend} (N={args.interpreters}): {entry.get('before', '-')} -> {entry.get('after', '-')}")
    if args.dry_run or args.check:
        from interpkit.shims.plan import PatchPlan

        plan = PatchPlan({Path(f.relative): f.plan for o in outcomes for f in o.files})
        console.print("plan (nothing written):", markup=False)
        console.print(plan.render(), markup=False, end="")
    if not args.quiet:
        console.print(f"{plural(summary['inputs'], 'input')}, {plural(summary['files'], 'file')}: "
                      f"{plural(summary['fixed'], 'finding')} fixed, {summary['unfixed']} unfixed, "
                      f"{plural(summary['edits'], 'edit')} planned")
