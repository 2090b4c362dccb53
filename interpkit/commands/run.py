"""`interpkit run`: serve a torch.package model from N namespaced interpreters; throughput, latency, Pss."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.output import add_exit_zero_argument, add_output_arguments, positive_int, positive_seconds

_PROTOCOL = """\
serving protocol: the archive holds the model as resource interpkit/model.pkl (called as
model(request), or model.batch(requests) for --batch > 1) and a non-empty list of example
requests as interpkit/requests.pkl; request k is requests[k % len(requests)]. Write such an
archive with interpkit.serve.server.export_model(out, model, requests, intern=[...]); the example:
python fixtures/models/make_example_package.py example.pt"""


def configure_parser(sub) -> None:
    parser = sub.add_parser(
        "run",
        help="serve a torch.package model from N interpreters of one process: throughput, latency, memory",
        description="Load a torch.package archive in N interpreters of the namespaces runtime, feed it\n"
        "--requests requests from a thread pool (one client thread per interpreter), and print\n"
        "throughput, latency percentiles (per request: the call that served its batch) and memory\n"
        "(Pss from /proc/self/smaps). The same batches are then replayed in interpreter 0 alone and\n"
        "every answer must be equal (exit 1 otherwise).",
        epilog=_PROTOCOL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("archive", type=Path, metavar="MODEL.pt", help="torch.package archive to serve")
    parser.add_argument("--interpreters", "-n", type=positive_int, default=2, metavar="N",
                        help="interpreters to serve from (default: %(default)s; at most 15)")
    parser.add_argument("--requests", "-k", type=positive_int, default=200, metavar="K",
                        help="requests to serve (default: %(default)s)")
    parser.add_argument("--batch", "-b", type=positive_int, default=1, metavar="B",
                        help="requests per call into an interpreter (default: %(default)s)")
    parser.add_argument("--threads-per-interpreter", "--torch-threads", dest="threads_per_interpreter", type=int,
                        default=None, metavar="T",
                        help="intra-op threads (torch, OpenMP, MKL) per interpreter; 0 keeps the libraries' "
                        "defaults (default: cores ÷ N)")
    parser.add_argument("--backend", choices=("namespaces", "copies"), default="namespaces",
                        help="runtime to serve from (default: namespaces)")
    parser.add_argument("--weights", choices=("mapped", "copied"), default="mapped",
                        help="mapped: the archive's tensor storages are mapped from the file, one copy in the "
                        "page cache shared by every interpreter; copied: torch.package's own reading, a heap "
                        "copy per interpreter (default: %(default)s)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip replaying the requests in one interpreter to compare the answers")
    parser.add_argument("--timeout", type=positive_seconds, default=600.0, metavar="SECONDS",
                        help="limit per call into an interpreter (default: %(default)g)")
    add_output_arguments(parser, formats=("table", "json"))
    add_exit_zero_argument(parser, "answers that differ")
    parser.set_defaults(func=run)




def run(args) -> int:
    from interpkit.analyzer.console import err_console, is_quiet
    from interpkit.output import check_namespace_count
    from interpkit.core.write import emit
    from interpkit.serve.server import serve_package

    if args.backend == "namespaces":
        check_namespace_count(args.interpreters)
    if args.threads_per_interpreter is not None and args.threads_per_interpreter < 0:
        raise InputError(f"cannot use --threads-per-interpreter {args.threads_per_interpreter} (must be 0 or more)")
    if args.output is not None and not (args.output.parent.is_dir() or str(args.output.parent) == ""):
        raise InputError(f"cannot write {args.output} (no such directory {args.output.parent})")
    console = err_console()
    with _progress_bar(console, enabled=not is_quiet()) as progress:
        result = serve_package(args.archive, interpreters=args.interpreters, requests=args.requests,
                               batch=args.batch, check=not args.no_check,
                               threads_per_interpreter=args.threads_per_interpreter,
                               timeout=args.timeout, backend=args.backend, weights=args.weights,
                               progress=progress)
    if args.format == "json":
        emit(json.dumps(result.to_json(), indent=2) + "\n", args.output)
    elif args.output:
        from io import StringIO

        from interpkit.analyzer.console import file_console

        buffer = StringIO()
        file_console(buffer).print(result)
        emit(buffer.getvalue(), args.output)
    else:
        from interpkit.analyzer.console import out_console

        out_console().print(result)
    if result.teardown_failed:
        # The report above is complete; tearing the interpreters down is what failed.
        err_console().print(f"interpkit: teardown failed: {result.teardown['status']}: "
                            f"{(result.teardown.get('message') or '').splitlines()[0]}", markup=False, highlight=False)
    failed = result.check.equal is False or result.teardown_failed
    return 0 if args.exit_zero or not failed else 1


class _progress_bar:
    """A rich progress bar on stderr for loading, serving and checking; silent when stderr is no terminal."""

    _LABELS = {"load": "loading model", "serve": "serving", "check": "checking answers"}

    def __init__(self, console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.progress = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if not self.console.is_terminal or not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True)
        self.progress.start()
        return self.update

    def update(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(self._LABELS.get(phase, phase), total=total)
        self.progress.update(self.tasks[phase], completed=done, total=total)

    def __exit__(self, *exc_info) -> None:
        if self.progress is not None:
            self.progress.stop()
