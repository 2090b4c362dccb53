"""`interpkit patch`: fix what can be fixed in new files, re-scan and re-verify them, say before -> after.

Exit status: 0 when every finding that affects a selected backend is fixed or handled at load
time; 1 when something stays unfixed (each with its reason) or, with --check, when a patch
would change anything; 2 for usage or input errors.
"""
from __future__ import annotations

from pathlib import Path

from interpkit.core.errors import FileFormatError, InputError
from interpkit.output import add_exit_zero_argument, add_quiet_argument, positive_int, positive_seconds

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
    from interpkit.output import check_namespace_count, require_paths
    from interpkit.core.write import emit, write_atomic
    from interpkit.shims.apply import Options, PatchReport, patch_input

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
        if not outcome.files and not outcome.rebuild and not outcome.rebuild_planned:
            raise InputError(f"cannot patch {path} (nothing to patch: no ELF files, wheels or buildable sources)")
    mode = "check" if args.check else "dry-run" if args.dry_run else "patch"
    report = PatchReport(tuple(outcomes), backends, args.interpreters, mode)
    if args.report:
        write_atomic(args.report, json.dumps(report.to_json(), indent=2) + "\n")
    if args.format == "json":
        emit(json.dumps(report.to_json(), indent=2) + "\n", None)
    else:
        from interpkit.analyzer.console import out_console

        console = out_console()
        for part in report.renderables(console, quiet=args.quiet):
            console.print(part)
    return 0 if args.exit_zero else int(report.failed)
