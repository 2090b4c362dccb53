"""`interpkit rules [CODE]`: list the rules, or explain one (what, why, example, fix)."""
from __future__ import annotations

from interpkit.core.errors import InputError


def configure_parser(sub) -> None:
    parser = sub.add_parser("rules", help="list rules, or explain one", description="List every rule, or show one rule's documentation.")
    parser.add_argument("code", nargs="?", help="a rule code such as IK101")
    parser.add_argument("--format", "-f", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args) -> int:
    import json

    from rich.markdown import Markdown
    from rich.table import Table

    from interpkit.analyzer.console import out_console
    from interpkit.analyzer.registry import all_rules

    rules = all_rules()
    if args.code:
        registered = rules.get(args.code.upper())
        if registered is None:
            raise InputError(f"cannot explain {args.code} (no such rule; `interpkit rules` lists them)")
        rule = registered.rule
        if args.format == "json":
            print(json.dumps(_rule_json(rule), indent=2))
            return 0
        console = out_console()
        console.print(f"[bold]{rule.code}[/bold] {rule.name} — {rule.title}")
        console.print(f"severity: {rule.severity.label}   backends: {', '.join(sorted(b.value for b in rule.backends))}"
                      f"   fix: {rule.fixable.value}")
        if rule.verdicts:
            console.print("verdict when found: " + ", ".join(f"{b.value}={v.value}" for b, v in sorted(rule.verdicts.items())))
        console.print(Markdown(rule.doc or "(no documentation)"))
        return 0
    if args.format == "json":
        print(json.dumps([_rule_json(r.rule) for r in rules.values()], indent=2))
        return 0
    table = Table("code", "name", "severity", "backends", "title")
    for registered in rules.values():
        rule = registered.rule
        table.add_row(rule.code, rule.name, rule.severity.label, ",".join(sorted(b.value for b in rule.backends)), rule.title)
    out_console().print(table)
    return 0


def _rule_json(rule) -> dict:
    return {
        "code": rule.code, "name": rule.name, "title": rule.title, "severity": rule.severity.label,
        "backends": sorted(b.value for b in rule.backends),
        "verdicts": {b.value: v.value for b, v in rule.verdicts.items()},
        "fix": rule.fix, "fixable": rule.fixable.value, "lifecycle": rule.lifecycle.value, "doc": rule.doc,
    }
