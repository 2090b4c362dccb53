"""IK901: a Python file that does not parse.

## What it does
Reports a Python source file that CPython cannot parse, at the line of the error.

## Why is this bad?
A module that does not parse cannot be imported in any interpreter, and none of the
source rules can look inside it, so every other finding for the file is missing. The
scan goes on with the remaining files.

## Example
```python
def forward(self, x)
    return x
```

## Use instead
```python
def forward(self, x):
    return x
```

## Known problems
The file is parsed with the analyzing Python (3.11+); syntax newer than that is reported
here even if the serving interpreter would accept it.

## References
- https://docs.python.org/3/reference/grammar.html
"""
from __future__ import annotations

import ast
from pathlib import Path

from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule

RULE = Rule(
    code="IK901",
    name="python-syntax-error",
    title="Python source that does not parse",
    severity=Severity.ERROR,
    backends=ALL_BACKENDS,
    verdicts={b: Verdict.FAIL for b in Backend},
    fix="fix the syntax error; nothing else in this file was checked",
    doc=__doc__,
)


def finding_for(path: Path, exc: SyntaxError) -> Finding:
    line = exc.lineno or 1
    reason = (exc.msg or "invalid syntax").splitlines()[0]
    return RULE.finding(Path(path), f"cannot parse {Path(path).name} ({reason} at line {line})", line=line,
                        column=exc.offset if exc.offset and exc.offset > 0 else None)


def check(path: Path, text: str) -> list[Finding]:
    """One finding at the error's line if `text` does not parse, else nothing."""
    try:
        ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        return [finding_for(path, exc)]
    return []
