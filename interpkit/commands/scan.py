"""`interpkit scan`: static findings for extensions, wheels, directories and model source."""
from __future__ import annotations

import argparse
from pathlib import Path

from interpkit.output import CONCISE, add_exit_zero_argument, add_output_arguments, add_rule_arguments, positive_seconds


def configure_parser(sub) -> None:
    parser = sub.add_parser(
        "scan",
        help="find what breaks under many interpreters (extensions, wheels, site-packages, model source)",
        description="Scan extension modules (.so), wheels, directories, site-packages, model source files or "
        "torch.package archives. Python entry files are followed through their imports down to the "
        "extensions they reach and those extensions' DT_NEEDED closure.",
    )
    # nargs="*": `scan --trace model.py` (the optional value of --trace takes the only path) is
    # checked in run(), which then scans the traced file
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    add_output_arguments(parser, formats=("table", CONCISE, "json", "sarif"))
    add_rule_arguments(parser)
    add_exit_zero_argument(parser)
    parser.add_argument("--only", choices=("elf", "source"), help="scan only ELF files or only Python source")
    parser.add_argument("--backend", type=_backends, default=None, metavar="namespaces|subinterpreters|copies",
                        help="judge only what these runtimes need (comma-separated): findings that affect none of "
                        "them are left out of the report and the exit status (default: every backend)")
    parser.add_argument("--no-closure", action="store_true", help="do not follow DT_NEEDED dependencies")
    parser.add_argument("--no-follow-imports", action="store_true", help="scan the named Python files only, not what they import")
    parser.add_argument("--third-party-source", action="store_true",
                        help="also rule-scan the Python source of installed packages the model imports (slow on a cold cache)")
    parser.add_argument("--trace", nargs="?", const=True, default=None, metavar="MODEL.py[:CALLABLE]",
                        help="also import the model (and call CALLABLE) in a sandboxed child and scan every extension "
                        "and shared object it really loaded (lazy imports, dlopen); bare --trace traces the .py paths")
    parser.add_argument("--trace-timeout", type=positive_seconds, default=300.0, metavar="S",
                        help="seconds the traced model may take (default: 300)")
    parser.add_argument("--probe", action="store_true",
                        help="settle unreadable module declarations by calling each entry point in a child of the "
                             "CPython the file is built for (the verdict is then marked observed)")
    parser.add_argument("--python", metavar="PATH|X.Y", default=None,
                        help="judge the tree for this Python: imports resolve against its standard library and "
                             "paths (default: the Python the tree's extensions are built for, else the running one)")
    parser.add_argument("--show-clean", action="store_true", help="list files without findings in the table too")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: when stderr is a terminal)")
    parser.set_defaults(func=run)


def resolve_config(args):
    """[tool.interpkit] from --config or the nearest pyproject.toml, then the command line."""
    from interpkit.analyzer.config import find_pyproject, load_config

    pyproject = args.config if args.config else find_pyproject(Path(args.paths[0]) if getattr(args, "paths", None) else Path.cwd())
    if args.config and not args.config.is_file():
        from interpkit.core.errors import InputError

        raise InputError(f"cannot read {args.config} (no such file)")
    config = load_config(pyproject)
    _check_configured_codes(config, pyproject)
    return config.with_cli(select=args.select, ignore=args.ignore, fail_on=args.fail_on,
                           backends=getattr(args, "backend", None))


def _backends(text: str):
    from interpkit.analyzer.config import parse_backends

    try:
        return parse_backends(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_configured_codes(config, pyproject) -> None:
    """A code in [tool.interpkit] select/ignore that names no rule is a typo, refused like on the command line."""
    from interpkit.output import unknown_rule_codes
    from interpkit.core.errors import InputError

    for key, codes in (("select", config.select), ("ignore", config.ignore)):
        unknown = unknown_rule_codes(codes)
        if unknown:
            raise InputError(f"cannot use [tool.interpkit] {key} in {pyproject} (unknown rule code "
                             f"{', '.join(unknown)}; `interpkit rules` lists them)")


def run(args) -> int:
    from dataclasses import replace

    from interpkit.output import exit_status
    from interpkit.analyzer.scan import scan_paths

    _trace_path_as_path(args)
    config = resolve_config(args)
    if args.no_closure:
        config = replace(config, follow_closure=False)
    if args.no_follow_imports:
        config = replace(config, follow_imports=False)
    if args.third_party_source:
        config = replace(config, third_party_source=True)
    if args.python:
        config = replace(config, python=args.python)
    # None: console.progress decides (a bar on a terminal, a plain line every few seconds elsewhere)
    progress = args.progress
    traces, model = [], None
    if args.trace is not None:
        # the trace runs first: what it saw loaded feeds the packaging plan, and its entry point
        # is the model object the export check pickles
        from interpkit.analyzer.tracing.trace import model_input, run_trace, targets_for

        traces = [run_trace(target, config, timeout=args.trace_timeout) for target in targets_for(args.trace, args.paths)]
        model = model_input(traces)
    report = scan_paths(args.paths, config, progress=progress and not args.quiet, only=args.only, cache=True,
                        model=model, probe=args.probe)
    if traces:
        from interpkit.analyzer.tracing.trace import with_traces

        report = with_traces(report, traces, config)
    render(report, args)
    return 0 if args.exit_zero else exit_status(report, config.fail_on)


def _trace_path_as_path(args) -> None:
    """`scan --trace model.py` names the path through --trace's value: scan that file."""
    if args.paths:
        return
    from interpkit.core.errors import InputError

    if isinstance(args.trace, str):
        from interpkit.analyzer.tracing.trace import parse_target

        args.paths = [parse_target(args.trace).entry]
        return
    raise InputError("scan needs a PATH (a file or folder to scan; `interpkit scan --help`)")


def render(report, args) -> None:
    from interpkit.core.write import emit

    if args.format == "json":
        from interpkit.analyzer.report.json import write as write_json

        write_json(report, args.output)   # in pieces: a site-packages report is megabytes
    elif args.format == "sarif":
        from interpkit.analyzer.report.sarif import render as render_sarif

        emit(render_sarif(report), args.output)
    elif args.format == CONCISE:
        from interpkit.analyzer.report.concise import render as render_concise

        emit(render_concise(report, quiet=args.quiet), args.output)
    else:
        from interpkit.analyzer.report.table import render_report

        if args.output:
            from io import StringIO

            from interpkit.analyzer.console import file_console

            buffer = StringIO()
            render_report(report, file_console(buffer), show_clean=args.show_clean, quiet=args.quiet)
            emit(buffer.getvalue(), args.output)
        else:
            from interpkit.analyzer.console import out_console

            render_report(report, out_console(), show_clean=args.show_clean, quiet=args.quiet)
