"""Sandboxed probe of one module under the namespaces backend.

``probe_module(name, ...)`` runs ``python -m interpkit.native.sandbox.probe --child`` in the sandbox
(``interpkit.native.sandbox``: its own process group, a timeout, a resident-memory limit, no
core dump), its job on stdin as every sandboxed child's is. The child starts N namespaced interpreters and, in order:

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

Each step is streamed to the parent when it starts and again when it completes, so a crash or
hang is pinned on a step and everything completed before it is kept; ``destroy`` and ``close``
are teardown steps (``ProbeOutcome.teardown``). The result is a ``ProbeOutcome``
(``interpkit.native.sandbox.outcome``), the same shape every backend produces.

Command line (prints one JSON object)::

    python -m interpkit.native.sandbox.probe --backend namespaces --interpreters 2 --module NAME \\
        [--path DIR] [--timeout 60] [--preimport torch] [--memory-limit-mb MiB]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from interpkit.native import sandbox
from interpkit.native.sandbox.outcome import ProbeOutcome, merge_steps, outcome_from_records, teardown_facts

DEFAULT_TIMEOUT_S = 60.0
# Resident memory (Pss of the child's process group), not address space: each namespace maps
# its own libpython, libc and every extension again, and a CUDA build of torch reserves tens
# of GiB it never touches. "auto" allows a base plus a share per interpreter, enough for torch
# everywhere while a runaway allocation still ends well short of the machine's memory.
AUTO = "auto"
BASE_MEMORY_MB = 2048
PER_INTERPRETER_MEMORY_MB = 1024


def default_memory_limit_mb(interpreters: int) -> int:
    return BASE_MEMORY_MB + PER_INTERPRETER_MEMORY_MB * interpreters


# The child is a fresh process, so it can always have glibc's largest namespace budget
# (docs: namespace limits); an existing setting is kept.
NAMESPACE_TUNABLE = "glibc.rtld.nns=16"


# --------------------------------------------------------------------------- child side

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


def _run_child() -> int:
    """The child: its job is the sandbox's JSON job line, its report the one step reporter."""
    report = sandbox.Steps(sandbox.Channel())
    job = sandbox.read_job()
    sandbox.no_core_dumps()
    if job.get("runtime_extension"):
        # A child under another Python: the runtime extension built for it, loaded before
        # anything imports the runtime.
        from interpkit.native.namespaces.build import activate

        activate(job["runtime_extension"])
    try:
        return _probe(report, job["module"], job.get("path"), job["interpreters"], tuple(job.get("preimport", ())),
                      job.get("backend", "namespaces"), job.get("op_library", False), job.get("libpython"))
    except Exception as exc:  # noqa: BLE001 - the runtime itself failed (timeout, closed)
        if report.steps and "ok" not in report.steps[-1]:
            report.steps[-1].update(ok=False, error=_remote(exc))
        return report.finish("error", f"{_last_step(report.steps)} failed: {_remote(exc)}")


def _probe(report: sandbox.Steps, name: str, path: str | None, n: int,
           preimport: tuple[str, ...], backend: str = "namespaces", op_library: bool = False,
           libpython: str | None = None) -> int:
    from interpkit.native.errors import InterpkitError, RemoteError
    from interpkit.native.namespaces.runtime import Runtime

    if backend == "copies":   # the same steps in the copies runtime (native/copies/runtime.py)
        from interpkit.native.copies.runtime import CopiesRuntime as Runtime

    sys_path = ([path] if path else []) + sys.path
    record = report.step("create", count=n, python=".".join(map(str, sys.version_info[:3])))
    try:
        runtime = Runtime(n, sys_path=sys_path, **({"libpython": libpython} if libpython else {}))
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
                runtime.call_all("interpkit.native.guest.probe_steps:import_module", module)
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
                if op_library:   # name is the library's path: loaded through torch (probe_steps)
                    record["op_library"] = runtime.call(index, "interpkit.native.guest.probe_steps:load_op_library", name)
                else:
                    loaded = runtime.call(index, "interpkit.native.guest.probe_steps:import_module_calling_ops", name)
                    record["file"] = loaded.pop("file")
                    if loaded:   # the import registered dispatcher operators: one was called
                        record["op_library"] = loaded
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
                result = runtime.call(index, "interpkit.native.guest.probe_steps:smoke", name)
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
            runtime.call(0, "interpkit.native.guest.probe_steps:set_marker", name, "interpreter 0")
            seen = [runtime.call(index, "interpkit.native.guest.probe_steps:get_marker", name)
                    for index in range(1, n)]
            if any(value is not None for value in seen):
                shared.append("module attributes")
        shared += [attr for attr, ids in identities.items() if len(ids) != len(set(ids))]
        report.step("shared_state", shared=sorted(shared), ok=not shared)
        if n >= 2:
            record = report.step("destroy", 0)
            record.update(ok=True, **teardown_facts([runtime.stop(0)]))
            if record["ok"] is False:
                return report.finish("hang", record["error"], shared)
            record = report.step("use_after_destroy", 1)
            try:
                runtime.call(1, "interpkit.native.guest.probe_steps:smoke", name)
            except RemoteError as exc:
                record["ok"] = False
                record["error"] = _remote(exc)
                return report.finish("error", "use after destroying another interpreter "
                                              f"failed: {record['error']}", shared)
            record["ok"] = True
        record = report.step("close")
    record.update(ok=True, **teardown_facts(runtime.teardown))
    if record["ok"] is False:
        return report.finish("hang", record["error"], shared)
    return report.finish("ok", "", shared)


# --------------------------------------------------------------------------- parent side

def child_env() -> dict[str, str]:
    """The environment of a namespaces child: the namespace budget, interpkit importable."""
    env = sandbox.tree_env()
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.rtld.nns=" not in tunables:
        env["GLIBC_TUNABLES"] = f"{tunables}:{NAMESPACE_TUNABLE}" if tunables else NAMESPACE_TUNABLE
    env.pop("PYTHONSTARTUP", None)
    return env


def _last_step(steps: list[dict]) -> str:
    if not steps:
        return "start-up"
    step = steps[-1]
    where = f" in interpreter {step['interpreter']}" if "interpreter" in step else ""
    return f"step {step['step']}{where}"


def probe_module(name: str, path: str | os.PathLike | None = None, *, interpreters: int = 2,
                 timeout: float = DEFAULT_TIMEOUT_S,
                 memory_limit_mb: int | str | None = AUTO,
                 preimport: tuple[str, ...] = (), backend: str = "namespaces",
                 op_library: bool = False, runtime=None) -> ProbeOutcome:
    """Import and use ``name`` in ``interpreters`` namespaced interpreters, in a sandbox.

    ``path`` is put in front of ``sys.path`` in the child and its interpreters;
    ``preimport`` modules are imported in each interpreter first (e.g. ``("torch",)`` for
    an op library whose DT_NEEDED libc10.so only resolves once torch is loaded).
    ``memory_limit_mb`` bounds the child's resident memory (``"auto"``: see
    ``default_memory_limit_mb``; None: no limit). Never raises for anything the probed
    module does; a problem starting the child itself comes back as status ``error``.
    ``runtime`` (``namespaces.build.NamespacesRuntimeFor``) runs the child under another Python,
    with the runtime extension built for it; None: this Python.
    """
    if memory_limit_mb == AUTO:
        memory_limit_mb = default_memory_limit_mb(interpreters)
    command = [*(runtime.command() if runtime else [sys.executable, "-X", "faulthandler"]),
               "-m", "interpkit.native.sandbox.probe", "--child"]
    job = {"module": name, "path": None if path is None else str(path), "interpreters": interpreters,
           "backend": backend, "preimport": list(preimport), "op_library": op_library,
           **(runtime.job_fields() if runtime else {})}
    run = sandbox.run(command, job, limits=sandbox.Limits(timeout_s=timeout,
                                                     memory_limit_mb=memory_limit_mb or None),
                      env=child_env())
    result = run.last("result")
    outcome = outcome_from_records(merge_steps(run.records), result["outcome"] if result else None,
                                   run.ending)
    return _second_import_exit(outcome) if backend == "copies" else outcome


def _second_import_exit(outcome: ProbeOutcome) -> ProbeOutcome:
    """A process that exits while importing the module into a further interpreter, after the
    first import went fine, observed the module failing there (e.g. a second copy's static
    initialiser refusing a key one shared library already holds), not a probe error."""
    import dataclasses

    steps = outcome.steps
    if (outcome.status == "error" and steps and steps[-1].get("step") == "import"
            and steps[-1].get("interpreter", 0) > 0
            and any(s.get("step") == "import" and s.get("ok") for s in steps[:-1])):
        return dataclasses.replace(outcome, status="import_error")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interpkit.native.sandbox.probe",
                                     description="Probe one module in N namespaced interpreters.")
    parser.add_argument("--backend", choices=["namespaces", "copies"], default="namespaces")
    parser.add_argument("--interpreters", type=int, default=2)
    parser.add_argument("--module", required=True)
    parser.add_argument("--path")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("--memory-limit-mb", type=int, default=None,
                        help="resident-memory limit in MiB (default: 2048 + 1024 per interpreter; "
                             "0: none)")
    parser.add_argument("--preimport", action="append", default=[],
                        help="module to import in each interpreter first (repeatable)")
    parser.add_argument("--op-library", action="store_true",
                        help="--module is the path of an op library: load it with torch.ops.load_library")
    args = parser.parse_args(argv)
    if args.interpreters < 1:
        parser.error("--interpreters must be at least 1")
    limit = AUTO if args.memory_limit_mb is None else (args.memory_limit_mb or None)
    outcome = probe_module(args.module, args.path, interpreters=args.interpreters,
                           timeout=args.timeout, memory_limit_mb=limit,
                           preimport=tuple(args.preimport), backend=args.backend,
                           op_library=args.op_library)
    print(json.dumps(outcome.to_json()))
    return 0


if __name__ == "__main__":
    # The sandboxed child takes its job from stdin, like every child the sandbox starts.
    sys.exit(_run_child() if sys.argv[1:] == ["--child"] else main())
