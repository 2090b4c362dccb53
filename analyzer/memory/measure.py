"""Measure what each interpreter costs: one bounded child process per (backend, interpreter count).

Backends measured: ``namespaces`` (native.Runtime, one process), ``copies``, ``subinterpreters``
(own-GIL subinterpreters in a 3.12+ child, 3.14 by default where one is found), and the peers a
user would pick instead: ``processes`` (N separate processes; their Pss adds up), ``threads``
(one interpreter, N threads), ``forked`` and ``forked-frozen`` (N processes forked after one
preloaded the workload, without and with ``gc.freeze()``; the parent counts). Each child runs
in the sandbox (``interpkit.native.sandbox``) and is killed when it runs past the timeout or
its process group's resident memory passes the limit; that row then carries the reason
instead of numbers. The numbers are streamed before the backend is torn down, so a crash or
hang at teardown keeps them and is reported beside them (``Sample.teardown``).

The headline is Pss: a file page mapped by k mappings counts 1/k in each, so Pss sums to
what the machine really spends. Rss is kept as a secondary column only (docs/facts.md fact 6).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from interpkit.core.errors import InputError
from interpkit.analyzer.memory.smaps import MemoryTotals

MEASURED_BACKENDS = ("namespaces", "subinterpreters", "copies", "processes", "threads", "forked", "forked-frozen")
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_LIMIT_MB = 8192
# glibc gives 11 namespaces by default, 15 with this tunable set before the process starts (docs/facts.md fact 5).
_MANY_NAMESPACES = 11
_NNS_TUNABLE = "glibc.rtld.nns=16"


@dataclass(frozen=True)
class Workload:
    """What every interpreter does before it is measured: import modules, then call one function."""

    modules: tuple[str, ...] = ()
    sys_path: tuple[str, ...] = ()
    call: str | None = None          # "package.module:function", called with no arguments
    files: tuple[str, ...] = ()      # the extension files among the modules, to check their ABI tag

    def as_dict(self) -> dict:
        return {"modules": list(self.modules), "sys_path": list(self.sys_path), "call": self.call}


def workload_for(paths: list[Path], modules: list[str], call: str | None) -> Workload:
    """Extension files and Python files among ``paths`` are imported by name from their sys.path root."""
    from interpkit.analyzer.plumbing.modules import module_location

    names: list[str] = []
    roots: list[str] = []
    files: list[str] = []
    for path in paths:
        path = Path(path).resolve()
        if path.suffix == ".so":
            location = module_location(path)
            if location is None:
                continue  # a plain library: it counts in the estimate, nothing imports it by name
            name, root = location
            files.append(str(path))
        elif path.suffix == ".py" and path.stem.isidentifier():
            name, root = path.stem, path.parent
        else:
            continue
        names.append(name)
        roots.append(str(root))
    if call is not None:
        module, sep, func = call.partition(":")
        if not sep or not all(p.isidentifier() for p in module.split(".")) or not func.isidentifier():
            raise InputError(f"cannot call {call!r} (expected module:function)")
    return Workload(tuple(dict.fromkeys([*names, *modules])), tuple(dict.fromkeys(roots)), call, tuple(files))


@dataclass
class Sample:
    """One child's answer: N interpreters of one backend, measured."""

    backend: str
    interpreters: int
    error: str | None = None
    total: MemoryTotals | None = None
    baseline: MemoryTotals | None = None
    per_interpreter: list[dict] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)
    teardown: dict | None = None    # how tearing the backend down failed, after it was measured

    @classmethod
    def from_child(cls, data: dict) -> "Sample":
        def totals(key: str) -> MemoryTotals | None:
            value = data.get(key)
            if not value:
                return None
            return MemoryTotals(**{k[: -len("_bytes")]: v for k, v in value.items()})

        return cls(data["backend"], data["interpreters"], data.get("error"), totals("total"), totals("baseline"),
                   data.get("per_interpreter") or [], data.get("loaded") or [], data)

    @property
    def python_version(self) -> str | None:
        """The CPython the sample was measured on ("3.14.10"); None when the child did not say."""
        return self.raw.get("python_version")


# ---------------------------------------------------------------------------- one child


def run_child(job: dict, *, timeout_s: float = DEFAULT_TIMEOUT_S,
              memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB) -> Sample:
    """Run interpkit.analyzer.memory.child on one job in the sandbox; never raises for what
    happens inside it. A sample measured before the child died at teardown is kept, with
    ``teardown`` saying what went wrong."""
    from interpkit.native import sandbox
    from interpkit.native.sandbox.outcome import merge_steps, outcome_from_records

    env = dict(os.environ)
    if job["backend"] == "namespaces" and job["interpreters"] >= _MANY_NAMESPACES:
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), _NNS_TUNABLE]))
    run = sandbox.run([sys.executable, "-X", "faulthandler", "-m", "interpkit.analyzer.memory.child"],
                      {**job, "timeout": timeout_s},
                      limits=sandbox.Limits(timeout_s=timeout_s, memory_limit_mb=memory_limit_mb),
                      env=env)
    result = run.last("result")
    outcome = outcome_from_records(merge_steps(run.records), result["outcome"] if result else None,
                                   run.ending, what="measuring")
    streamed = run.last("sample")
    if streamed is None:
        return Sample(job["backend"], job["interpreters"], error=outcome.message.splitlines()[0])
    try:
        sample = Sample.from_child(streamed["sample"])
    except (TypeError, KeyError):
        return Sample(job["backend"], job["interpreters"], error="the measuring child wrote an unreadable sample")
    if outcome.failed_at_teardown:
        sample.teardown = outcome.teardown
        sample.raw["teardown"] = outcome.teardown
    return sample


# ---------------------------------------------------------------------------- all of them


def backend_unavailable(backend: str, python: str | None = None) -> str | None:
    """None when ``backend`` can be measured here, else why not."""
    if backend in ("namespaces", "copies"):
        try:
            from interpkit.native import limits

            return limits.check_libpython(limits.find_libpython())
        except Exception as exc:  # an unbuilt native extension, a static libpython
            return f"the {backend} runtime is not available ({exc})"
    if backend == "subinterpreters":
        try:
            from interpkit.native.subinterpreters.runtime import resolve_python

            info = resolve_python(python or "3.13")
        except Exception as exc:
            return str(exc)
        return info.unsupported_reason()
    return None


def not_installed(workload: Workload, python: str) -> str | None:
    """A reason when ``python`` cannot find a top-level module of the workload (found, never imported)."""
    probe = ("import importlib.util, json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
             "print(json.dumps([m for m in json.loads(sys.argv[2]) if importlib.util.find_spec(m) is None]))")
    tops = sorted({name.partition(".")[0] for name in workload.modules})
    if workload.call:
        tops = sorted({*tops, workload.call.partition(":")[0].partition(".")[0]})
    try:
        done = subprocess.run([python, "-I", "-c", probe, json.dumps(list(workload.sys_path)), json.dumps(tops)],
                              capture_output=True, text=True, timeout=60)
        missing = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None  # cannot tell: let the measurement say what happens
    if missing:
        return f"{', '.join(missing)} not installed for {python}"
    return None


def abi_mismatch(workload: Workload, python: str) -> str | None:
    """A reason when an extension file of the workload was built for another Python than ``python``."""
    from interpkit.analyzer.memory.estimate import _soabi
    from interpkit.analyzer.plumbing.modules import abi_matches

    soabi = _soabi(python)
    for file in workload.files:
        if not abi_matches(Path(file), soabi):
            return f"{Path(file).name} is not built for {soabi}; build it for that Python to measure this backend"
    return None


def default_subinterpreter_python() -> str:
    """3.14 where one is found (own-GIL subinterpreters, concurrent.interpreters), else 3.13."""
    try:
        from interpkit.native.subinterpreters.runtime import resolve_python

        resolve_python("3.14")
        return "3.14"
    except Exception:  # noqa: BLE001 - not found or not usable: 3.13 answers for itself
        return "3.13"


def measure(workload: Workload, counts: list[int], backends: list[str], *,
            timeout_s: float = DEFAULT_TIMEOUT_S, memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB,
            subinterpreter_python: str | None = None, progress=None) -> list[Sample]:
    """One Sample per (backend, count), in that order; unavailable backends give error samples.
    The subinterpreters run on ``subinterpreter_python``, by default 3.14 where one is found."""
    samples: list[Sample] = []
    subinterpreters_on = subinterpreter_python or (
        default_subinterpreter_python() if "subinterpreters" in backends else None)
    for backend in backends:
        # With a Python named for the subinterpreters, the processes are of that Python too:
        # interpreter k+1 against process k+1 of the same CPython.
        other_python = backend == "subinterpreters" or (backend == "processes" and subinterpreter_python)
        reason = backend_unavailable("subinterpreters" if other_python else backend, subinterpreters_on)
        if reason is None and other_python:
            from interpkit.native.subinterpreters.runtime import resolve_python

            target = str(resolve_python(subinterpreters_on).executable)
            reason = abi_mismatch(workload, target) or not_installed(workload, target)
        for count in counts:
            if reason is not None:
                samples.append(Sample(backend, count, error=f"skipped ({reason})"))
                continue
            if progress is not None:
                progress(f"measuring {backend} with {count} interpreter{'s' if count != 1 else ''}")
            job = {"backend": backend, "interpreters": count, **workload.as_dict()}
            if other_python:
                job["python"] = subinterpreters_on
            samples.append(run_child(job, timeout_s=timeout_s, memory_limit_mb=memory_limit_mb))
    return samples
