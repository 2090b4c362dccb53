"""Sandboxed probe of one module under the namespaces backend.

``probe_module(name, ...)`` starts a child process (its own process group, a timeout, an
address-space limit, no core dump) that runs ``python -m interpkit.native.probe --child``. The child
starts N namespaced interpreters and, in order:

``create``            start the interpreters (``count`` = how many)
``preimport``         import each ``preimport`` module in every interpreter (optional; also
                      done, with ``automatic: true``, when the import fails for want of a
                      library torch provides, e.g. libc10.so)
``import``            import the module in each interpreter
``smoke``             ``dir()`` it and ``repr`` every public attribute, in each
``shared_state``      set an attribute on the module in interpreter 0 and look for it in
                      the others; compare object ids across interpreters
``destroy``           finalize interpreter 0 on its own thread while the others live
``use_after_destroy`` smoke the module again in interpreter 1
``close``             finalize the rest

Each step is sent to the parent as it starts, so a crash or hang is pinned on a step. The
parent turns a negative return code into ``crash`` (signal name) and a timeout into
``hang``, killing the whole process group so nothing is left behind. The result is a
``ProbeOutcome`` (``interpkit.native.outcome``), the same shape the subinterpreters backend produces.

Command line (prints one JSON object)::

    python -m interpkit.native.probe --backend namespaces --interpreters 2 --module NAME \\
        [--path DIR] [--timeout 60] [--preimport torch] [--memory-limit-mb MiB]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from interpkit.native.outcome import ProbeOutcome, out_of_memory

DEFAULT_TIMEOUT_S = 60.0
# Address space, not resident memory: each namespace maps its own libpython, libc and every
# extension again (measured: 4 interpreters with torch imported take 3.1 GiB of address
# space). "auto" allows a base plus a share per interpreter, enough for torch everywhere
# while a runaway allocation still ends well short of the machine's memory.
AUTO = "auto"
BASE_MEMORY_MB = 2048
PER_INTERPRETER_MEMORY_MB = 1024


def default_memory_limit_mb(interpreters: int) -> int:
    return BASE_MEMORY_MB + PER_INTERPRETER_MEMORY_MB * interpreters
# The child is a fresh process, so it can always have glibc's largest namespace budget
# (DESIGN.md fact 5); an existing setting is kept.
NAMESPACE_TUNABLE = "glibc.rtld.nns=16"
_REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- child side

class _Reporter:
    """Writes JSON lines on the fd that was stdout at start; the module's prints go to stderr."""

    def __init__(self) -> None:
        self._stream = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self.steps: list[dict] = []

    def step(self, name: str, interpreter: int | None = None, **extra) -> dict:
        record = {"step": name}
        if interpreter is not None:
            record["interpreter"] = interpreter
        record.update(extra)
        self.steps.append(record)
        self._emit({"event": "step", **record})
        return record

    def finish(self, status: str, message: str = "", shared: list[str] = ()) -> int:
        outcome = ProbeOutcome(status, message, None, tuple(self.steps), tuple(sorted(shared)))
        self._emit({"event": "result", "outcome": outcome.to_json()})
        return 0

    def _emit(self, record: dict) -> None:
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()


# An op library's DT_NEEDED on torch's own libraries resolves only once torch is loaded in
# the same namespace (torch's Python package loads them, RTLD_LOCAL, by full path).
_LOADED_BY = {"libc10": "torch", "libtorch": "torch", "libshm": "torch"}


def _needs_first(error: str, already: tuple[str, ...]) -> str | None:
    """The module to import first when ``error`` is a missing library it would provide."""
    if "cannot open shared object file" not in error:
        return None
    library = error.split(":")[1].strip() if error.count(":") >= 2 else ""
    for prefix, module in _LOADED_BY.items():
        if library.startswith(prefix) and module not in already:
            return module
    return None


def _remote(exc: BaseException) -> str:
    from interpkit.native.errors import RemoteError

    if isinstance(exc, RemoteError):
        return f"{exc.type_name}: {exc.remote_message}"
    return f"{type(exc).__name__}: {exc}"


def _run_child(name: str, path: str | None, n: int, preimport: tuple[str, ...]) -> int:
    report = _Reporter()
    try:
        return _probe(report, name, path, n, preimport)
    except Exception as exc:  # noqa: BLE001 - the runtime itself failed (timeout, closed)
        return report.finish("error", f"{_last_step(report.steps)} failed: {_remote(exc)}")


def _probe(report: _Reporter, name: str, path: str | None, n: int,
           preimport: tuple[str, ...]) -> int:
    from interpkit.native.errors import InterpkitError, RemoteError
    from interpkit.native.runtime import Runtime

    sys_path = ([path] if path else []) + sys.path
    record = report.step("create", count=n)
    try:
        runtime = Runtime(n, sys_path=sys_path)
    except InterpkitError as exc:
        record["ok"] = False
        record["error"] = str(exc)
        return report.finish("error", str(exc))
    record["ok"] = True
    shared: list[str] = []
    with runtime:
        def load_first(module: str, automatic: bool) -> str | None:
            record = report.step("preimport", module=module, automatic=automatic)
            try:
                runtime.call_all("interpkit.native.probe_steps:import_module", module)
            except RemoteError as exc:
                record["ok"] = False
                record["error"] = _remote(exc)
                return f"cannot import {module} first: {record['error']}"
            record["ok"] = True
            return None

        for module in preimport:
            failure = load_first(module, automatic=False)
            if failure:
                return report.finish("error", failure)
        index = 0
        while index < n:
            record = report.step("import", index)
            try:
                record["file"] = runtime.call(index, "interpkit.native.probe_steps:import_module", name)
            except RemoteError as exc:
                # Whatever the import raised, the module did not load here.
                record["ok"] = False
                record["error"] = _remote(exc)
                needs = _needs_first(record["error"], preimport)
                if needs is None:
                    return report.finish("import_error", record["error"])
                failure = load_first(needs, automatic=True)
                if failure:
                    return report.finish("import_error", f"{record['error']} ({failure})")
                preimport = (*preimport, needs)
                continue                    # the same interpreter again, now with torch
            record["ok"] = True
            index += 1
        identities: dict[str, list[int]] = {}
        for index in range(n):
            record = report.step("smoke", index)
            try:
                result = runtime.call(index, "interpkit.native.probe_steps:smoke", name)
            except RemoteError as exc:
                record["ok"] = False
                record["error"] = _remote(exc)
                return report.finish("error", f"smoke failed in interpreter {index}: "
                                              f"{record['error']}")
            record.update(ok=True, attributes=result["attributes"])
            if result["repr_errors"]:
                record["repr_errors"] = result["repr_errors"]
            for attr, ident in result["identities"].items():
                identities.setdefault(attr, []).append(ident)
        if n >= 2:
            runtime.call(0, "interpkit.native.probe_steps:set_marker", name, "interpreter 0")
            seen = [runtime.call(index, "interpkit.native.probe_steps:get_marker", name)
                    for index in range(1, n)]
            if any(value is not None for value in seen):
                shared.append("module attributes")
        shared += [attr for attr, ids in identities.items() if len(ids) != len(set(ids))]
        report.step("shared_state", shared=sorted(shared), ok=not shared)
        if n >= 2:
            record = report.step("destroy", 0)
            runtime.stop(0)
            record["ok"] = True
            record = report.step("use_after_destroy", 1)
            try:
                runtime.call(1, "interpkit.native.probe_steps:smoke", name)
            except RemoteError as exc:
                record["ok"] = False
                record["error"] = _remote(exc)
                return report.finish("error", "use after destroying another interpreter "
                                              f"failed: {record['error']}", shared)
            record["ok"] = True
        record = report.step("close")
    record["ok"] = True
    return report.finish("ok", "", shared)


# --------------------------------------------------------------------------- parent side

def _limit_resources(memory_limit_mb: int | None) -> None:
    # Runs first thing in the child, before any namespace or module is loaded.
    if memory_limit_mb:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.rtld.nns=" not in tunables:
        env["GLIBC_TUNABLES"] = f"{tunables}:{NAMESPACE_TUNABLE}" if tunables else NAMESPACE_TUNABLE
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTHONSTARTUP", None)
    return env


def _parse(stdout: str) -> tuple[list[dict], dict | None]:
    steps: list[dict] = []
    result = None
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "step":
            steps.append({k: v for k, v in record.items() if k != "event"})
        elif record.get("event") == "result":
            result = record["outcome"]
    return steps, result


def _last_step(steps: list[dict]) -> str:
    if not steps:
        return "start-up"
    step = steps[-1]
    where = f" in interpreter {step['interpreter']}" if "interpreter" in step else ""
    return f"step {step['step']}{where}"


def probe_module(name: str, path: str | os.PathLike | None = None, *, interpreters: int = 2,
                 timeout: float = DEFAULT_TIMEOUT_S,
                 memory_limit_mb: int | str | None = AUTO,
                 preimport: tuple[str, ...] = ()) -> ProbeOutcome:
    """Import and use ``name`` in ``interpreters`` namespaced interpreters, in a sandbox.

    ``path`` is put in front of ``sys.path`` in the child and its interpreters;
    ``preimport`` modules are imported in each interpreter first (e.g. ``("torch",)`` for
    an op library whose DT_NEEDED libc10.so only resolves once torch is loaded).
    ``memory_limit_mb`` caps the child's address space (``"auto"``: see
    ``default_memory_limit_mb``; None: no cap). Never raises for anything the probed
    module does; a problem starting the child itself comes back as status ``error``.
    """
    if memory_limit_mb == AUTO:
        memory_limit_mb = default_memory_limit_mb(interpreters)
    command = [sys.executable, "-m", "interpkit.native.probe", "--child", "--module", name,
               "--interpreters", str(interpreters)]
    if memory_limit_mb:
        # The child limits itself before loading anything: no preexec_fn, which is unsafe
        # in a threaded parent (pytest, the runtime's own threads).
        command += ["--memory-limit-mb", str(memory_limit_mb)]
    if path is not None:
        command += ["--path", str(path)]
    for module in preimport:
        command += ["--preimport", module]
    try:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", env=_child_env(), start_new_session=True)
    except OSError as exc:
        return ProbeOutcome("error", f"cannot start probe child ({exc})")
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        memory = out_of_memory(proc.pid, memory_limit_mb)
        # Its own process group: kill it and anything it started.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate()
        steps, _ = _parse(stdout)
        if memory is not None:
            # Reported as the kernel's OOM killer would end it: a crash by SIGKILL.
            return ProbeOutcome("crash", f"{memory}; killed after {timeout:g} s ({_last_step(steps)})",
                                "SIGKILL", tuple(steps))
        return ProbeOutcome("hang", f"no result after {timeout:g} s ({_last_step(steps)})",
                            None, tuple(steps))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # stragglers the child may have forked
        except (ProcessLookupError, PermissionError):
            pass
    steps, result = _parse(stdout)
    if proc.returncode < 0:
        signame = signal.Signals(-proc.returncode).name
        return ProbeOutcome("crash", f"killed by {signame} ({_last_step(steps)})", signame,
                            tuple(steps))
    if result is not None:
        return ProbeOutcome.from_json(result)
    tail = " | ".join(stderr.strip().splitlines()[-3:])[:500]
    return ProbeOutcome("error", f"probe child exited with {proc.returncode} without a "
                                 f"result ({_last_step(steps)}): {tail}", None, tuple(steps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interpkit.native.probe",
                                     description="Probe one module in N namespaced interpreters.")
    parser.add_argument("--backend", choices=["namespaces"], default="namespaces")
    parser.add_argument("--interpreters", type=int, default=2)
    parser.add_argument("--module", required=True)
    parser.add_argument("--path")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("--memory-limit-mb", type=int, default=None,
                        help="address-space cap in MiB (default: 2048 + 1024 per interpreter; "
                             "0: none)")
    parser.add_argument("--preimport", action="append", default=[],
                        help="module to import in each interpreter first (repeatable)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.interpreters < 1:
        parser.error("--interpreters must be at least 1")
    if args.child:
        _limit_resources(args.memory_limit_mb)
        return _run_child(args.module, args.path, args.interpreters, tuple(args.preimport))
    limit = AUTO if args.memory_limit_mb is None else (args.memory_limit_mb or None)
    outcome = probe_module(args.module, args.path, interpreters=args.interpreters,
                           timeout=args.timeout, memory_limit_mb=limit,
                           preimport=tuple(args.preimport))
    print(json.dumps(outcome.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
