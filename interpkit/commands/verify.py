"""`interpkit verify`: load each extension in the real runtime (sandboxed) and compare with the prediction."""
from __future__ import annotations

import sys
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.analyzer.output import add_output_arguments, positive_int


def configure_parser(sub) -> None:
    parser = sub.add_parser(
        "verify",
        help="load extensions in N real interpreters and compare with the prediction",
        description="For each extension module found under the paths: import it in N interpreters of the chosen "
        "runtime inside a sandboxed child process, use it, tear one interpreter down, use it in another, and "
        "record ok / import error / crash / hang beside the analyzer's prediction.",
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    parser.add_argument("--site-packages", type=Path, metavar="DIR", help="verify every extension of an environment")
    parser.add_argument("--interpreters", "-n", type=positive_int, default=2, metavar="N", help="interpreters per probe (default: 2)")
    parser.add_argument("--backend", choices=("namespaces", "subinterpreters"), default="namespaces")
    parser.add_argument("--python", metavar="VERSION", help="Python for the subinterpreters backend (default: 3.13)")
    parser.add_argument("--subinterpreter-config", choices=("isolated", "legacy"), default="isolated",
                        help="own-GIL isolated (default) or legacy shared-GIL subinterpreters")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per-probe time limit (default: 60)")
    add_output_arguments(parser, formats=("table", "json"))
    parser.set_defaults(func=run)




def run(args) -> int:
    from interpkit.core.findings import Backend
    from interpkit.analyzer.output import emit

    paths = list(args.paths) + ([args.site_packages] if args.site_packages else [])
    if not paths:
        raise InputError("cannot verify (give at least one PATH or --site-packages DIR)")
    if args.python and args.backend != "subinterpreters":
        args.backend = "subinterpreters"
    backend = Backend(args.backend)
    if args.site_packages and backend is Backend.SUBINTERPRETERS and not args.paths:
        data = _verify_environment(args)
    else:
        data = _verify_paths(paths, backend, args)
    summary = data["summary"]
    if args.format == "json":
        import json

        emit(json.dumps(data, indent=2) + "\n", args.output)
    else:
        render_table(data, args)
    return 1 if summary["agreed"] < summary["decided"] or summary["crashes_predicted_safe"] else 0


def _verify_paths(paths, backend, args) -> dict:
    """Scan the paths' ELF files, probe each extension module by its import name."""
    from interpkit.analyzer.config import Config
    from interpkit.analyzer.scan import scan_paths
    from interpkit.analyzer.verify import confusion, verify_results

    report = scan_paths(paths, Config(follow_imports=False), only="elf", progress=sys.stderr.isatty())
    rows = verify_results(report.files, backend, interpreters=args.interpreters, timeout=args.timeout,
                          python=args.python, config_name=args.subinterpreter_config)
    return {"schema": "interpkit-verify/1", "backend": backend.value, "interpreters": args.interpreters,
            "results": [r.to_json() for r in rows],
            "errors": [{"path": str(fr.path), "error": fr.error} for fr in report.files if fr.error],
            "summary": confusion(rows)}


def _verify_environment(args) -> dict:
    """A whole site-packages under CPython subinterpreters: every PyInit_* of every binary,
    one child per module, crashes blamed on a compiled dependency when it crashes alone too."""
    from interpkit.analyzer.verify_corpus import verify_site_packages

    if not args.site_packages.is_dir():
        raise InputError(f"cannot verify {args.site_packages} (not a directory)")
    corpus = verify_site_packages(args.site_packages, args.python or "3.13", args.interpreters,
                                  configuration=args.subinterpreter_config, timeout_s=args.timeout)
    rows = corpus.pop("rows")
    return {"schema": "interpkit-verify/1", **corpus, "results": rows, "errors": []}


def render_table(data: dict, args) -> None:
    from rich.table import Table
    from rich.text import Text

    from interpkit.analyzer.console import out_console

    style = {"ok": "green", "fail": "red", "unknown": "yellow"}
    summary = data["summary"]
    table = Table(title=f"verify: {data['backend']}, {data['interpreters']} interpreters", title_justify="left")
    for column in ("module", "predicted", "observed", "status", "agree", "findings", "detail"):
        table.add_column(column, overflow="fold")
    for r in data["results"]:
        agree = {True: Text("yes", "green"), False: Text("NO", "bold red"), None: Text("-", "dim")}[r["agrees"]]
        detail = (r.get("message") or "").splitlines()[0][:120] if r.get("message") else ""
        table.add_row(r["module"], Text(r["predicted"], style[r["predicted"]]), Text(r["observed"], style[r["observed"]]),
                      r["status"], agree, ",".join(r["codes"]), detail)
    console = out_console()
    console.print(table)
    for error in data["errors"]:
        console.print(Text.assemble(("error ", "bold red"), error["path"], f": {error['error']}"))
    rate = summary["agreement"]
    console.print(
        f"agreement: {summary['agreed']}/{summary['decided']} decided"
        + (f" ({rate:.0%})" if rate is not None else "")
        + f", {summary['undecided']} undecided; crashes predicted safe: {len(summary['crashes_predicted_safe'])}"
    )
    matrix = Table(title="predicted (rows) × observed (columns)", title_justify="left")
    matrix.add_column("")
    for o in ("ok", "fail", "unknown"):
        matrix.add_column(o, justify="right")
    for p in ("ok", "fail", "unknown"):
        matrix.add_row(p, *(str(summary["matrix"][p][o]) for o in ("ok", "fail", "unknown")))
    console.print(matrix)
