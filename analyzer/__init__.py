"""interpkit.analyzer: static analysis (ELF and source facts, rules, reports) and the commands' engines.

Import it as ``interpkit.analyzer``; ``interpkit`` re-exports the result types and ``scan``.
"""
