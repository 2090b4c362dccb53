"""Subcommands: one module each, with configure_parser(sub) and run(args) -> int."""
