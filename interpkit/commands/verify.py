"""`interpkit verify`: load each extension in the real runtime (sandboxed) and compare with the prediction."""
from __future__ import annotations

import sys
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.output import CONCISE, add_exit_zero_argument, add_output_arguments, positive_int, positive_seconds


def configure_parser(sub) -> None:
    parser = sub.add_parser(
        "verify",
        help="load extensions in N real interpreters and compare with the prediction",
        description="For each extension module found under the paths (files, folders, site-packages, wheels): "
        "import it in N interpreters of the chosen runtime inside a sandboxed child process, use it, tear one "
        "interpreter down, use it in another, and record ok / import error / crash / hang beside the "
        "analyzer's prediction. Wheels are unpacked safely into a temporary folder first.",
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    parser.add_argument("--site-packages", type=Path, metavar="DIR", help="verify every extension of an environment")
    parser.add_argument("--interpreters", "-n", type=positive_int, default=2, metavar="N",
                        help="interpreters per probe (default: 2; at most 15 with namespaces)")
    parser.add_argument("--backend", choices=("namespaces", "subinterpreters", "copies"), default="namespaces")
    parser.add_argument("--python", metavar="VERSION", help="Python for the subinterpreters backend (default: for "
                        "each extension a Python of its ABI, cp312 … cp315; abi3 from its floor up, 3.13 preferred)")
    parser.add_argument("--subinterpreter-config", choices=("isolated", "legacy"), default="isolated",
                        help="own-GIL isolated (default) or legacy shared-GIL subinterpreters")
    parser.add_argument("--timeout", type=positive_seconds, default=60.0, metavar="SECONDS",
                        help="per-probe time limit (default: 60)")
    add_output_arguments(parser, formats=("table", CONCISE, "json"))
    add_exit_zero_argument(parser, "disagreements")
    parser.set_defaults(func=run)


def run(args) -> int:
    from interpkit.core.findings import Backend
    from interpkit.output import check_namespace_count, require_paths

    paths = list(args.paths) + ([args.site_packages] if args.site_packages else [])
    if not paths:
        raise InputError("cannot verify (give at least one PATH or --site-packages DIR)")
    require_paths(paths, "verify")
    if args.python and args.backend != "subinterpreters":
        args.backend = "subinterpreters"
    backend = Backend(args.backend)
    if backend is Backend.NAMESPACES:
        check_namespace_count(args.interpreters)
    if args.site_packages and backend is Backend.SUBINTERPRETERS and not args.paths:
        report = _verify_environment(args)
    else:
        report = _verify_paths(paths, backend, args)
    render(report, args)
    return 0 if args.exit_zero else int(report.failed)


def _verify_paths(paths, backend, args):
    """Scan the paths' ELF files (wheels unpacked for the duration), probe each extension module by its import name."""
    from interpkit.analyzer.plumbing.archive import unpacked_wheels
    from interpkit.analyzer.config import Config
    from interpkit.analyzer.scan import scan_paths
    from interpkit.analyzer.verification.verify import VerifyReport, verifiable, verify_results

    with unpacked_wheels(paths) as unpacked:
        report = scan_paths(unpacked.paths, Config(follow_imports=False), only="elf",
                            progress=sys.stderr.isatty() and not args.quiet)
        # a wheel inside a folder was also scanned in memory; its unpacked folder is what gets loaded
        files = [fr for fr in report.files if not unpacked.is_wheel_copy(fr.path)]
        errors = [(str(path), error) for path, error in unpacked.errors]
        errors += [(unpacked.display(fr.path), unpacked.display_text(fr.error)) for fr in files if fr.error]
        if not any(verifiable(fr) for fr in files):
            # Nothing to load is an unusable input (exit 2), not a clean result.
            if errors:
                raise InputError(errors[0][1])
            raise InputError(f"cannot verify {', '.join(str(p) for p in paths)} (no extension modules or op libraries found)")
        from interpkit.analyzer.console import progress

        modules = sum(1 for fr in files if verifiable(fr))
        # one step per probed module: a bar on a terminal, a plain line every few seconds in a log
        with progress("verifying", total=modules) as advance:
            rows = verify_results(files, backend, interpreters=args.interpreters, timeout=args.timeout,
                                  python=args.python, config_name=args.subinterpreter_config, progress=advance)
        return VerifyReport.from_rows(rows, errors, backend, args.interpreters, display=unpacked.display)


def _verify_environment(args):
    """A whole site-packages under CPython subinterpreters: every PyInit_* of every binary,
    one child per module, crashes blamed on a compiled dependency when it crashes alone too."""
    from interpkit.analyzer.verification.verify import VerifyReport
    from interpkit.analyzer.verification.corpus import verify_environment
    from interpkit.core.findings import Backend

    if not args.site_packages.is_dir():
        raise InputError(f"cannot verify {args.site_packages} (not a directory)")
    rows, figures = verify_environment(args.site_packages, args.python or "3.13", args.interpreters,
                                       configuration=args.subinterpreter_config, timeout_s=args.timeout)
    if not rows:
        raise InputError(f"cannot verify {args.site_packages} (no extension modules found)")
    return VerifyReport.from_rows(rows, [], Backend.SUBINTERPRETERS, args.interpreters, header=figures)


def render(report, args) -> None:
    import json

    from interpkit.analyzer.console import out_console
    from interpkit.core.write import emit

    if args.format == "json":
        emit(json.dumps(report.to_json(), indent=2) + "\n", args.output)
    elif args.format == CONCISE:
        lines = report.concise_lines() + ([] if args.quiet else [report.summary_text()])
        emit("".join(line + "\n" for line in lines), args.output)
    elif args.output:
        from io import StringIO

        from interpkit.analyzer.console import file_console

        buffer = StringIO()
        console = file_console(buffer)
        for part in report.renderables(console, quiet=args.quiet):
            console.print(part)
        emit(buffer.getvalue(), args.output)
    else:
        console = out_console()
        for part in report.renderables(console, quiet=args.quiet):
            console.print(part)
