"""`interpkit memory`: what one more interpreter costs, measured (smaps) beside the static ELF estimate."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.output import add_exit_zero_argument, add_output_arguments, positive_seconds

_BACKEND_CHOICES = ("namespaces", "subinterpreters", "copies", "processes", "threads", "forked", "forked-frozen",
                    "all")
# The runtime and what a user would pick instead of it; copies is asked for by name.
_DEFAULT_BACKENDS = ("namespaces", "threads", "processes", "forked", "forked-frozen", "subinterpreters")


def configure_parser(sub) -> None:
    parser = sub.add_parser(
        "memory",
        help="memory of N interpreters beside the peers (threads, processes, forked after preload): "
        "measured Pss and its prediction",
        description="Start 1..N interpreters, import the given modules (and extension files), optionally call "
        "a function, and read /proc/<pid>/smaps: total Pss, Private_Dirty, Shared, the marginal cost of the next "
        "interpreter, beside a prediction of the Pss for N made from the one-interpreter run (its heap and the "
        "file pages it wrote of its own copies; the static ELF estimate stays a detail). By default the options a user would "
        "pick instead are measured in the same run: one process with N threads, N processes (sum of Pss), N "
        "processes forked after preloading the workload (with and without gc.freeze()) and, where the workload "
        "imports there, subinterpreters of --python; one line names the option that holds N for the least "
        "memory. Every measurement runs in a child process with a timeout and a memory limit.",
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="extension modules (.so) or Python files to import, or folders/libraries to estimate")
    parser.add_argument("--import", dest="modules", action="append", default=[], metavar="MOD",
                        help="module to import in every interpreter (repeatable)")
    parser.add_argument("--call", metavar="MOD:FUNC", help="call this function with no arguments after the imports "
                        "(e.g. a forward pass)")
    parser.add_argument("--interpreters", "-n", type=_counts, default=[1, 2, 4], metavar="N,N,...",
                        help="interpreter counts to measure; 1 is always measured, the predictions start "
                        "from it (default: 1,2,4)")
    parser.add_argument("--backend", type=_backends, default=list(_DEFAULT_BACKENDS),
                        metavar="|".join(_BACKEND_CHOICES),
                        help="what to measure: a backend, several (comma-separated) or all of them (default: "
                        f"{','.join(_DEFAULT_BACKENDS)}: the namespaces and the peers a user would pick)")
    parser.add_argument("--python", metavar="PYTHON", help="interpreter for the subinterpreters backend "
                        "(a path, or 3.15 … 3.12; default: 3.14 where one is found, else 3.13); when named, the processes "
                        "compared are of it too")
    parser.add_argument("--no-follow-imports", action="store_true",
                        help="estimate from the named modules' own extension files, not everything they import")
    parser.add_argument("--estimate-only", action="store_true", help="print the static estimate; start nothing")
    parser.add_argument("--timeout", type=positive_seconds, default=600.0, metavar="SECONDS",
                        help="limit per measurement (default: %(default)g)")
    parser.add_argument("--memory-limit", type=_mebibytes, default=8192, metavar="MIB",
                        help="kill a measurement whose processes hold more resident memory (default: %(default)d)")
    add_output_arguments(parser, formats=("table", "json"))
    add_exit_zero_argument(parser, "measurements that failed")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="also draw memory vs N per backend (needs matplotlib)")
    parser.set_defaults(func=run)


def _backends(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in _BACKEND_CHOICES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"cannot measure {', '.join(unknown) or text!r} "
                                         f"(choose from {', '.join(_BACKEND_CHOICES)})")
    return list(_BACKEND_CHOICES[:-1]) if "all" in names else list(dict.fromkeys(names))


def _mebibytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of MiB: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 MiB, got {text!r}")
    return value


def _counts(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read {text!r} (expected counts such as 1,2,4)") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"cannot use {text!r} (counts must be 1 or more)")
    return values


def run(args) -> int:
    from interpkit.analyzer.console import err_console
    from interpkit.analyzer.memory.estimate import collect_inputs, estimate_files
    from interpkit.analyzer.memory.measure import measure, workload_for
    from interpkit.analyzer.memory.report import MemoryReport
    from interpkit.core.write import emit

    from interpkit.output import check_namespace_count, require_paths

    if not args.paths and not args.modules:
        raise InputError("cannot measure nothing (give extension PATHs or --import MOD)")
    require_paths(args.paths, "measure")
    for path in args.paths:
        if path.is_dir() and not any(path.rglob("*.so")):
            raise InputError(f"cannot measure {path} (no extension modules in it)")
    if "namespaces" in args.backend and not args.estimate_only:
        check_namespace_count(max(args.interpreters))
    if args.plot is not None:
        folder = args.plot.parent if str(args.plot.parent) else Path(".")
        if not folder.is_dir():
            raise InputError(f"cannot plot to {args.plot} (no such directory {folder})")
        try:
            import matplotlib  # noqa: F401 - fail before minutes of measuring, not after
        except ImportError:
            raise InputError("cannot plot (matplotlib is not installed: pip install 'interpkit[plot]')") from None
    files = collect_inputs(args.paths, args.modules, follow_imports=not args.no_follow_imports)
    estimate = estimate_files(files)
    workload = workload_for(args.paths, args.modules, args.call)
    samples = []
    if not args.estimate_only:
        backends = args.backend
        console = err_console()
        show = sys.stderr.isatty() and not args.quiet
        with console.status("measuring", spinner="dots") if show else _Quiet() as status:
            def progress(message: str) -> None:
                if status is not None:
                    status.update(message)

            counts = sorted({1, *args.interpreters})   # every prediction starts from one interpreter
            samples = measure(workload, counts, backends, timeout_s=args.timeout,
                              memory_limit_mb=args.memory_limit, subinterpreter_python=args.python,
                              progress=progress)
    report = MemoryReport.build(workload, estimate, samples)
    if args.format == "json":
        import json

        emit(json.dumps(report.to_json(), indent=2) + "\n", args.output)
    else:
        _print_table(report, args.output)
    if args.plot is not None:
        report.plot(args.plot)
    # A backend that was asked for and could not be measured is a failed check.
    failed = any(row.error and not row.error.startswith("skipped") for row in report.rows)
    # So is one measured but not torn down cleanly: its numbers are in the report, beside why.
    failed = failed or any(sample.teardown for sample in samples)
    return 0 if args.exit_zero else int(failed)


class _Quiet:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        return None


def _print_table(report, output: Path | None) -> None:
    from io import StringIO

    from interpkit.analyzer.console import file_console, out_console
    from interpkit.core.write import emit

    if output is None:
        out_console().print(report)  # the terminal's width, or unbounded off a terminal
        return
    buffer = StringIO()
    file_console(buffer).print(report)
    emit(buffer.getvalue(), output)
