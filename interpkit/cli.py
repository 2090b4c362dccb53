"""The root command line: builds the parser, dispatches to interpkit/commands/<name>.py.

One exit status for every subcommand (README, "Exit status"):
  0  clean: nothing at or above the threshold (or --exit-zero)
  1  findings, disagreements or failed checks at or above the threshold
  2  bad command line or unusable input (unknown rule codes, out-of-range counts or limits,
     missing paths, inputs with nothing the command can act on)
  3  an internal error (a bug: please report it with --debug's traceback)
Tracebacks only with --debug.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from interpkit import __version__
from interpkit.core.errors import InterpkitError

# Each name is a module interpkit/commands/<name>.py with configure_parser(sub) and run(args) -> int.
COMMANDS = ("scan", "rules", "verify", "patch", "memory", "run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interpkit",
        description="Find, verify and fix what breaks when Python extensions run in many interpreters of one process.",
    )
    parser.add_argument("--version", action="version", version=f"interpkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"interpkit.commands.{name}").configure_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from interpkit.analyzer.console import set_quiet

    set_quiet(getattr(args, "quiet", False))
    try:
        return int(args.func(args) or 0)
    except InterpkitError as exc:
        if args.debug:
            raise
        print(f"interpkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interpkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # the last line of defence: one line, never a traceback
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"interpkit: internal error: {type(exc).__name__}: {first} (run with --debug for details)", file=sys.stderr)
        return 3


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
