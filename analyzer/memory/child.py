"""The measuring child: start one backend with N interpreters, run the workload, read smaps.

Run in the sandbox (``interpkit.native.sandbox``) as ``python -m interpkit.analyzer.memory.child``
with a JSON job on stdin. It streams, in order: the ``measure`` step, the ``sample`` record
(the numbers, written as soon as they are measured), the ``close`` step (the backend torn
down: interpreters finalised, the server child ended) and a ``result``. The parent
(measure.py) bounds it with a timeout and a resident-memory limit, so a module that crashes,
hangs or balloons costs one row, not the report, and a crash or hang at teardown leaves the
measured sample in place, with the teardown failure beside it.

Every backend is measured the same way: a snapshot before anything starts (the baseline),
one after the interpreters start, and one after each interpreter has imported the modules
and run the call, taken in turn so that each interpreter's own heap shows up as a delta.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import interpkit.native.guest as guest
from interpkit.analyzer.memory.smaps import (
    LoadedObject,
    MemoryTotals,
    attribute,
    read_rollup,
    read_smaps,
    total_of,
)

# A process that imports the workload, says so on its protocol line, and waits on stdin, or
# (the forked rows) preloads it and forks the N children; guest code, run by path under any Python.
WORKER_FILE = Path(guest.__file__).with_name("memory_worker.py")


def _workload_source(job: dict) -> str:
    """Source each interpreter runs: the imports, then the call (its result stays inside)."""
    lines = [f"import {name}" for name in job["modules"]]
    if job.get("call"):
        module, _, func = job["call"].partition(":")
        lines.append(f"import {module} as _ik_memory_target")
        lines.append(f"_ik_memory_target.{func}()")
    return "\n".join(lines) or "pass"


def _unattributed_anonymous(objects: list[LoadedObject]) -> int:
    return attribute(read_smaps(), objects).anonymous.private_dirty


# ---------------------------------------------------------------------------- namespaces


def measure_namespaces(job: dict, teardown: contextlib.ExitStack, runtime_class=None) -> dict:
    from interpkit.native.namespaces.runtime import Runtime

    Runtime = runtime_class or Runtime  # noqa: N806 - the copies runtime has the same API

    n = job["interpreters"]
    baseline = read_rollup()
    anon_before = _unattributed_anonymous([])
    sys_path = [*job["sys_path"], *sys.path]
    per_interpreter: list[dict] = []
    # Kept open until the sample is out: main() closes it afterwards as the observed teardown
    # step, so a crash or hang while finalising cannot take the measured numbers with it.
    rt = teardown.enter_context(Runtime(n, sys_path=sys_path, timeout=job.get("timeout")))
    started = read_rollup()

    def listing() -> list[LoadedObject]:
        return [LoadedObject(i, o.path, o.base) for i in range(n) for o in rt.namespace_libs(i)]

    anon_started = _unattributed_anonymous(listing())
    start_share = (anon_started - anon_before) // n
    source = _workload_source(job)
    for index in range(n):
        anon_prev = _unattributed_anonymous(listing())
        private_before = read_rollup().private_dirty
        rt.run(index, source)
        private_after = read_rollup().private_dirty
        anon_now = _unattributed_anonymous(listing())
        per_interpreter.append({
            "heap_bytes": start_share + anon_now - anon_prev,
            # What running the workload in this one interpreter added, files and heap together.
            "workload_private_dirty_delta_bytes": private_after - private_before,
        })
    objects = listing()
    mappings = read_smaps()
    split = attribute(mappings, objects)
    for index, entry in enumerate(per_interpreter):
        entry["objects"] = split.by_interpreter.get(index, MemoryTotals()).as_dict()
        # Each namespace loads its own copy of every file: what this one wrote of them (relocated
        # and written .data, touched .bss) a further one writes again; pages no code wrote stay
        # clean or unallocated, however many the program headers declare writable.
        entry["repeated_files_bytes"] = entry["objects"]["private_dirty_bytes"]
    by_object = {f"{i}:{path}": totals.as_dict() for (i, path), totals in split.by_object.items()}
    return {
        "baseline": baseline.as_dict(),
        "started": started.as_dict(),
        "total": total_of(mappings).as_dict(),
        "attribution": split.as_dict(),
        "per_interpreter": per_interpreter,
        "by_object": by_object,
        "loaded": [o.path for o in objects if o.interpreter == 0],
    }


# ---------------------------------------------------------------------------- threads


def measure_threads(job: dict, teardown: contextlib.ExitStack) -> dict:
    """One interpreter, N threads: the interpreter imports and runs the call once (its lazy
    imports and caches are the interpreter's, paid once), then each thread runs the call and
    waits; a thread's heap is what it added after that."""
    import importlib

    n = job["interpreters"]
    baseline = read_rollup()
    sys.path[:0] = job["sys_path"]
    for name in job["modules"]:
        importlib.import_module(name)
    target = None
    if job.get("call"):
        module, _, func = job["call"].partition(":")
        target = getattr(importlib.import_module(module), func)
        target()   # the warm-up: a call that imports lazily (transformers) did it in the first thread only
    release = threading.Event()
    ready = threading.Barrier(n + 1)
    failures: list[str] = []

    def serve() -> None:
        try:
            if target is not None:
                target()
        except BaseException as exc:  # reported as this row's error
            failures.append(f"{type(exc).__name__}: {exc}")
        ready.wait()
        release.wait()

    threads = [threading.Thread(target=serve, name=f"interpkit-memory-{i}") for i in range(n)]
    anonymous_before = _unattributed_anonymous([])
    for thread in threads:
        thread.start()
    ready.wait()
    mappings = read_smaps()
    # What the threads added (stacks, their malloc arenas, what the call keeps), each its share.
    heap = (attribute(mappings, []).anonymous.private_dirty - anonymous_before) // n
    release.set()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(failures[0].splitlines()[0])
    split = attribute(mappings, [])
    return {"baseline": baseline.as_dict(), "total": total_of(mappings).as_dict(),
            "attribution": split.as_dict(), "per_interpreter": [{"heap_bytes": heap}] * n,
            "loaded": _mapped_objects(mappings)}


def _mapped_objects(mappings) -> list[str]:
    return list(dict.fromkeys(m.path for m in mappings if m.is_file and m.offset == 0))


# ---------------------------------------------------------------------------- processes


class _Worker:
    """One process running the memory worker (native/guest/memory_worker.py); its stderr goes to
    a file so a chatty module cannot block it."""

    def __init__(self, python: str, job: dict, sys_path: list[str] | None = None) -> None:
        payload = json.dumps({"sys_path": sys_path if sys_path is not None else job["sys_path"],
                              "modules": job["modules"], "call": job.get("call")})
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([python, "-I", str(WORKER_FILE)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.proc.stdin.write(payload + "\n")     # the job line, as every child gets its job
        self.proc.stdin.flush()

    def expect(self, event: str) -> dict:
        line = self.proc.stdout.readline()
        message = json.loads(line) if line.strip() else {"event": "exit"}
        if message["event"] != event:
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(message.get("message") or (tail or ["the worker ended"])[-1])
        return message

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def measure_processes(job: dict, teardown: contextlib.ExitStack) -> dict:
    """N separate processes: the sum of their Pss is what they cost together."""
    n = job["interpreters"]
    if job.get("python"):
        # Processes of the Python the subinterpreters ran on (3.14 against its own
        # subinterpreters); its own sys.path, the host's site-packages are another ABI's.
        from interpkit.native.subinterpreters.runtime import resolve_python

        python = resolve_python(job["python"])
        executable, sys_path, version = str(python.executable), list(job["sys_path"]), python.full_version
    else:
        # The same search path the namespaces see (the host's), so both import the same files.
        executable, sys_path, version = sys.executable, [*job["sys_path"], *sys.path], platform.python_version()
    workers = [_Worker(executable, job, sys_path) for _ in range(n)]
    try:
        for worker in workers:
            worker.expect("baseline")
            worker.go()
        per_interpreter = []
        total = MemoryTotals()
        loaded: list[str] = []
        attribution = None
        for worker in workers:
            pid = worker.expect("ready")["pid"]
            mappings = read_smaps(pid)
            split = attribute(mappings, [], pid=pid)
            total.add(total_of(mappings))
            # A process maps its own copy of every file: what it wrote of them, another writes again.
            per_interpreter.append({"objects": split.host_objects.as_dict(),
                                    "heap_bytes": split.anonymous.private_dirty,
                                    "repeated_files_bytes": split.host_objects.private_dirty})
            if not loaded:
                loaded = _mapped_objects(mappings)
                attribution = split.as_dict()
        return {"baseline": MemoryTotals().as_dict(), "total": total.as_dict(), "attribution": attribution,
                "per_interpreter": per_interpreter, "loaded": loaded, "python_version": version}
    finally:
        for worker in workers:
            worker.stop()


# ---------------------------------------------------------------------------- processes forked after preloading

# An OpenMP pool started before fork() does not exist in the child, whose first parallel
# region then waits for it forever (libgomp; torch's forward pass with its default threads):
# a pre-fork server keeps its parent single-threaded, and so does this one.
_THREAD_POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _single_threaded_environment() -> dict[str, str]:
    return {**os.environ, **{name: "1" for name in _THREAD_POOL_VARIABLES}}


def measure_forked(job: dict, teardown: contextlib.ExitStack, *, freeze: bool = False) -> dict:
    """N processes forked after their parent preloaded the workload (a pre-fork server's
    ``--preload``); the parent stays, as a server's master does, and its Pss counts: the
    pages it shares with the children are split between them all."""
    sys_path = [*job["sys_path"], *sys.path]
    payload = json.dumps({"sys_path": sys_path, "modules": job["modules"], "call": job.get("call"),
                          "children": job["interpreters"], "freeze": freeze})
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-I", str(WORKER_FILE)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=_single_threaded_environment())
    proc.stdin.write(payload + "\n")     # the job line, as every child gets its job
    proc.stdin.flush()

    def stop() -> None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()

    try:
        line = proc.stdout.readline()
        message = json.loads(line) if line.strip() else {"event": "exit"}
        if message["event"] != "ready":
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(message.get("message") or (tail or ["the preloading process ended"])[-1])
        parent = message["parent"]
        parent_mappings = read_smaps(parent)
        total = total_of(parent_mappings)
        per_interpreter = []
        for pid in message["children"]:
            mappings = read_smaps(pid)
            child_total = total_of(mappings)
            total.add(child_total)
            # What the child wrote after the fork: everything else it still shares with the parent.
            per_interpreter.append({"heap_bytes": child_total.private_dirty,
                                    "objects": attribute(mappings, [], pid=pid).host_objects.as_dict()})
        return {"baseline": MemoryTotals().as_dict(), "total": total.as_dict(),
                "parent": total_of(parent_mappings).as_dict(),
                "attribution": attribute(parent_mappings, [], pid=parent).as_dict(),
                "per_interpreter": per_interpreter, "loaded": _mapped_objects(parent_mappings)}
    finally:
        stop()


# ---------------------------------------------------------------------------- subinterpreters


def measure_subinterpreters(job: dict, teardown: contextlib.ExitStack) -> dict:
    """N own-GIL subinterpreters in one child of a 3.12+/3.13 Python (interpkit.native.subinterpreters.runtime)."""
    from interpkit.native.subinterpreters.runtime import SubinterpreterRuntime, resolve_python

    n = job["interpreters"]
    python = resolve_python(job.get("python") or "3.13")
    bare = _Worker(str(python.executable), {"sys_path": [], "modules": [], "call": None})
    try:
        bare_pid = bare.expect("baseline")["pid"]
        baseline = read_rollup(bare_pid)
        baseline_anonymous = attribute(read_smaps(bare_pid), [], pid=bare_pid).anonymous.private_dirty
    finally:
        bare.stop()
    per_interpreter: list[dict] = []
    # What one more empty subinterpreter costs, told apart from its server's own start (which
    # is paid once): a server of n + 1 empty ones against the server of n measured below.
    # With n = 1 alone the two cannot be separated, and the prediction needs the first.
    probe = SubinterpreterRuntime(n + 1, python=python, sys_path=tuple(job["sys_path"]),
                                  timeout_s=job.get("timeout") or 300, memory_limit_mb=None)
    try:
        # Every interpreter answers one call first: the call's own machinery (pickle, ...) is then
        # in each of them, not only in the one asked for the pid, whose workload would look cheaper.
        probe_pid = probe.call_all("os:getpid")[0]
        probe_anonymous = attribute(read_smaps(probe_pid), [], pid=probe_pid).anonymous.private_dirty
    finally:
        _close_server(probe)
    # The outer sandbox bounds memory and time for the whole group; the server child is in it.
    rt = SubinterpreterRuntime(n, python=python, sys_path=tuple(job["sys_path"]),
                               timeout_s=job.get("timeout") or 300, memory_limit_mb=None)
    teardown.callback(_close_server, rt)
    pid = rt.call_all("os:getpid")[0]
    started = read_rollup(pid)
    started_anonymous = attribute(read_smaps(pid), [], pid=pid).anonymous.private_dirty
    start_share = (started_anonymous - baseline_anonymous) // n
    empty_subinterpreter = max(0, probe_anonymous - started_anonymous)
    source = _workload_source(job)
    for index in range(n):
        anon_prev = attribute(read_smaps(pid), [], pid=pid).anonymous.private_dirty
        rt.run(index, source)
        anon_now = attribute(read_smaps(pid), [], pid=pid).anonymous.private_dirty
        # The start share is mostly the server's own main interpreter, paid once however many
        # subinterpreters it holds: a further one repeats an empty subinterpreter and what the
        # workload added.
        per_interpreter.append({"heap_bytes": start_share + anon_now - anon_prev,
                                "empty_interpreter_bytes": empty_subinterpreter,
                                "repeated_heap_bytes": empty_subinterpreter + anon_now - anon_prev})
    mappings = read_smaps(pid)
    split = attribute(mappings, [], pid=pid)
    return {"baseline": baseline.as_dict(), "started": started.as_dict(), "total": total_of(mappings).as_dict(),
            "attribution": split.as_dict(), "per_interpreter": per_interpreter,
            "loaded": _mapped_objects(mappings), "python": str(python.executable),
            "python_version": python.full_version}


def _close_server(rt) -> None:
    """Close the subinterpreters server; its crash or hang while destroying them is a teardown failure."""
    rt.close()
    if not rt.ending.clean:
        cause = rt.ending.cause()
        raise RuntimeError(f"the subinterpreters server {rt.ending.describe()} while closing"
                           + (f": {cause}" if cause else ""))


def one_line(exc: BaseException) -> str:
    """The exception as one line; a remote traceback gives its last line (the exception itself)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback"):
        return lines[-1]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def measure_copies(job: dict, teardown: contextlib.ExitStack) -> dict:
    """As namespaces, in the copies runtime: namespace_libs(i) lists interpreter i's own
    libpython copy and extension copies; libc and Py*-free dependencies are shared."""
    from interpkit.native.copies.runtime import CopiesRuntime

    return measure_namespaces(job, teardown, runtime_class=CopiesRuntime)


MEASURERS = {
    "namespaces": measure_namespaces,
    "copies": measure_copies,
    "threads": measure_threads,
    "processes": measure_processes,
    "subinterpreters": measure_subinterpreters,
    "forked": measure_forked,
    "forked-frozen": functools.partial(measure_forked, freeze=True),
}


def main(argv: list[str]) -> int:
    from interpkit.native import sandbox

    channel = sandbox.Channel()   # the workload may print: fd 1 goes to stderr from here on
    job = sandbox.read_job()
    sandbox.no_core_dumps()
    report = sandbox.Steps(channel)
    teardown = contextlib.ExitStack()
    report.step("measure", backend=job["backend"], count=job["interpreters"])
    try:
        result = MEASURERS[job["backend"]](job, teardown)
        result["error"] = None
        report.done(ok=True)
    except BaseException as exc:  # one row's error, shown by the parent
        if os.environ.get("INTERPKIT_DEBUG"):
            traceback.print_exc()
        result = {"error": one_line(exc)}
        report.done(ok=False, error=result["error"])
    result["backend"] = job["backend"]
    result["interpreters"] = job["interpreters"]
    if job["backend"] in ("namespaces", "copies", "threads"):
        result.setdefault("python_version", platform.python_version())  # they run in this Python
    channel.emit("sample", sample=result)
    # Teardown is its own step: a crash or hang here is pinned on "close", after the sample.
    report.step("close")
    status, message = ("ok", "") if result["error"] is None else ("error", result["error"])
    try:
        teardown.close()
        report.done(ok=True)
    except BaseException as exc:
        report.done(ok=False, error=one_line(exc))
        status, message = "error", f"teardown failed: {one_line(exc)}"
    report.finish(status, message)
    sys.stdout.flush()
    # The host's own finalisation is not what is measured; everything is already streamed.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
