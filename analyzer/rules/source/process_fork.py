"""IK403: a process forked from model code.

## What it does
Finds `os.fork`, `os.forkpty`, `pty.fork`, and `multiprocessing` use that forks: `Process`,
`Pool`, `get_context()` / `get_context("fork")`, `set_start_method("fork")` and
`concurrent.futures.ProcessPoolExecutor` without an `mp_context` (the default start method is
`fork` on Linux up to Python 3.13). `torch.multiprocessing` spellings count too.

## Why is this bad?
`fork()` copies only the calling thread. With several interpreters in the process, the
other interpreters' worker threads vanish in the child while their GILs and allocator locks
stay held, so the child deadlocks. Isolated subinterpreters refuse outright:
`RuntimeError: fork not supported for isolated subinterpreters`.

## Example
```python
import multiprocessing
pool = multiprocessing.Pool(4)
```

## Use instead
Batch inside the model with threads or torch's intra-op parallelism, or ask the serving
process to run the work; if a child process is unavoidable, use
`multiprocessing.get_context("spawn")` from the main interpreter only.

## Known problems
A start method chosen elsewhere (`set_start_method("spawn")` in another module) is not seen,
so `Process`/`Pool` are still reported.

## References
- https://docs.python.org/3/library/multiprocessing.html#contexts-and-start-methods
- https://docs.python.org/3/library/os.html#os.fork
"""
from __future__ import annotations

from pathlib import Path


from interpkit.core.findings import ALL_BACKENDS, Backend, Finding, Severity, Verdict
from interpkit.analyzer.registry import Rule
from interpkit.analyzer.source import ast_pass
from interpkit.analyzer.source.walk import SourceRule, run_rule

RULE = Rule(
    code="IK403",
    name="process-fork",
    title="process forked from model code",
    severity=Severity.ERROR,
    backends=ALL_BACKENDS,
    verdicts={b: Verdict.FAIL for b in Backend},
    fix="do not fork inside a multi-interpreter process; use threads or a spawn context in the host",
    doc=__doc__,
)

TRIGGER = r"fork|multiprocessing|ProcessPoolExecutor"

FORKS = frozenset({"os.fork", "os.forkpty", "pty.fork", "posix.fork"})
_MP_PREFIXES = ("multiprocessing.", "torch.multiprocessing.")
MP_CONSTRUCTORS = frozenset(p + n for p in _MP_PREFIXES for n in ("Process", "Pool", "context.Process"))
MP_CHOOSERS = frozenset(p + n for p in _MP_PREFIXES for n in ("get_context", "set_start_method"))
PROCESS_POOL = frozenset({"concurrent.futures.ProcessPoolExecutor", "concurrent.futures.process.ProcessPoolExecutor"})


class ProcessForkCheck:
    """What IK403 looks for, written once for both trees (walk.SourceRule, ast_pass.AstRule)."""
    RULE = RULE

    def visit_Call(self, node) -> None:
        name = self.matched_name(node.func, FORKS)
        if name:
            self.report(node, f"`{name}` forks the whole multi-interpreter process", data={"call": name})
            return
        name = self.matched_name(node.func, MP_CONSTRUCTORS)
        if name:
            self.report(node, f"`{name}` starts a process with the default start method (fork on Linux)", data={"call": name})
            return
        name = self.matched_name(node.func, MP_CHOOSERS)
        if name:
            argument = self.argument(node, 0, "method")
            method = self.string_value(argument)
            if (method is None and argument is None and name.endswith("get_context")) or method == "fork":
                self.report(node, f"`{name}({method!r})` selects the fork start method" if method
                            else f"`{name}()` returns the default (fork) context on Linux")
            return
        name = self.matched_name(node.func, PROCESS_POOL)
        if name and self.argument(node, 1, "mp_context") is None:
            self.report(node, f"`{name}` without mp_context forks worker processes on Linux", data={"call": name})


class ProcessFork(ProcessForkCheck, SourceRule):
    """IK403 on LibCST's tree (the reference; files the ast pass cannot decide)."""


class ProcessForkAst(ProcessForkCheck, ast_pass.AstRule):
    """IK403 on CPython's ast (the scan's fast path)."""


VISITOR = ProcessFork
AST_VISITOR = ProcessForkAst
# Every finding needs a node resolving to one of these (the scan skips files without one).
NAMES = FORKS | MP_CONSTRUCTORS | MP_CHOOSERS | PROCESS_POOL

VALID = [
    "import multiprocessing as mp\nctx = mp.get_context('spawn')\n",
    "import os\nos.getpid()\n",
    "from concurrent.futures import ProcessPoolExecutor\nimport multiprocessing\n"
    "ex = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn'))\n",
    "def fork():\n    pass\nfork()\n",
]
INVALID = [
    "import os\npid = os.fork()  # bad\n",
    "from os import fork as f\nf()  # bad\n",
    "import multiprocessing as mp\np = mp.Process(target=print)  # bad\n",
    "from multiprocessing import Pool\nwith Pool(2) as pool:  # bad\n    pass\n",
    "import multiprocessing\nmultiprocessing.set_start_method('fork')  # bad\n",
    "import torch.multiprocessing as tmp\nctx = tmp.get_context()  # bad\n",
    "import concurrent.futures as cf\nex = cf.ProcessPoolExecutor(4)  # bad\n",
    "import os\nos.fork()  # interpkit: ignore[IK403]\n",
]


def check(path: Path, text: str) -> list[Finding]:
    return run_rule(VISITOR, text, path)
