"""Helpers for the shim tests: compile small C/C++ sources, run code in real interpreters.

Everything runs for real: sources under tests/shims/csrc/ and fixtures/ext/ are compiled
with gcc, loaded with the dynamic loader in child processes (so RTLD_GLOBAL loads and
crashes never touch the test process), and imported in legacy subinterpreters.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
REPO = Path(__file__).resolve().parents[2]


def compile_shared(source: Path, output: Path, *flags: str) -> Path:
    compiler = "g++" if source.suffix == ".cpp" else "gcc"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(output), str(source), *flags],
                   check=True, capture_output=True, text=True)
    return output


def run_child(code: str, *, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(REPO))


def run_in_legacy_subinterpreters(bodies: list[str], timeout: float = 60) -> list:
    """Run each body in its own legacy subinterpreter of one child process; each body sets
    RESULT (JSON-able); returns the RESULTs in order."""
    code = f"""
        import json, os, sys, tempfile
        try:
            import _interpreters as api
            create = lambda: api.create("legacy")
            run = lambda i, c: api.exec(i, c)
        except ImportError:
            import _xxsubinterpreters as api
            create, run = api.create, api.run_string
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            for index, body in enumerate({bodies!r}):
                path = os.path.join(tmp, f"{{index}}.json")
                prelude = f"import sys, json; sys.path.insert(0, {str(REPO)!r}); OUT = {{path!r}}\\n"
                epilogue = "\\nwith open(OUT, 'w') as fh: json.dump(RESULT, fh)\\n"
                run(create(), prelude + body + epilogue)
                with open(path) as fh:
                    out.append(json.load(fh))
        print(json.dumps(out))
    """
    proc = run_child(code, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


