"""IK404: a child program started from model code.

## What it does
Finds `subprocess` calls (`run`, `Popen`, `call`, `check_call`, `check_output`,
`getoutput`, `getstatusoutput`), `os.popen`, the `os.exec*` family and `os.posix_spawn*`
/ `os.spawn*`, under any import alias.

## Why is this bad?
Isolated subinterpreters (`_interpreters.create('isolated')` on 3.13, the own-GIL config on
3.12) do not allow exec: `subprocess` raises `RuntimeError: subprocess not supported for
isolated subinterpreters`, and `os.exec*` raises a similar error. Under the namespaces and
copies runtimes the call works, but it runs while other interpreters keep executing in the
same process.

## Example
```python
import subprocess
out = subprocess.check_output(["nvidia-smi"])
```

## Use instead
Gather what the model needs at packaging time, or have the serving process run the
command and pass the result in.

## Known problems
`os.system` is not reported: CPython does not block it in isolated subinterpreters.

## References
- https://docs.python.org/3/library/subprocess.html
- https://peps.python.org/pep-0684/
"""
from __future__ import annotations

from pathlib import Path


from interpkit.core.findings import Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

RULE = Rule(
    code="IK404",
    name="subprocess-spawn",
    title="child program started from model code",
    severity=Severity.WARNING,
    backends=frozenset({Backend.SUBINTERPRETERS}),
    verdicts={Backend.SUBINTERPRETERS: Verdict.FAIL},
    fix="run external commands in the serving process, not in the model",
    doc=__doc__,
)

TRIGGER = r"subprocess|popen|exec[lv]|spawn"

SPAWNS = frozenset(
    {f"subprocess.{n}" for n in ("run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput")}
    | {f"os.{n}" for n in ("popen", "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe",
                           "posix_spawn", "posix_spawnp", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
                           "spawnve", "spawnvp", "spawnvpe")}
)


class SubprocessSpawnCheck:
    """What IK404 looks for, written once for both trees (walk.SourceRule, ast_pass.AstRule)."""
    RULE = RULE

    def visit_Call(self, node) -> None:
        name = self.matched_name(node.func, SPAWNS)
        if name:
            self.report(node, f"`{name}` starts a child program (exec is refused in isolated subinterpreters)", data={"call": name})


class SubprocessSpawn(SubprocessSpawnCheck, SourceRule):
    """IK404 on LibCST's tree (the reference; files the ast pass cannot decide)."""


class SubprocessSpawnAst(SubprocessSpawnCheck, ast_pass.AstRule):
    """IK404 on CPython's ast (the scan's fast path)."""


VISITOR = SubprocessSpawn
AST_VISITOR = SubprocessSpawnAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = SPAWNS

VALID = [
    "import subprocess\nprint(subprocess.PIPE)\n",
    "import os\nos.system('true')\n",
    "def run(cmd):\n    return cmd\nrun(['ls'])\n",
]
INVALID = [
    "import subprocess\nsubprocess.run(['ls'])  # bad\n",
    "from subprocess import check_output as co\nco(['ls'])  # bad\n",
    "import subprocess as sp\ndef f():\n    return sp.Popen(['ls'])  # bad\n",
    "import os as o\no.execv('/bin/true', ['true'])  # bad\n",
    "import subprocess\nsubprocess.run(['ls'])  # interpkit: ignore[IK404]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
