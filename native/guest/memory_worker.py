"""The memory command's measured processes, in two modes chosen by the job.

- one process of the "processes" and "subinterpreters" rows (the job has no ``children``): it
  says it is up (``baseline``, pid), waits for the go-ahead line, imports the workload (and
  calls it), says ``ready`` (pid) or ``error`` (message), and stays until stdin closes;
- the "forked" rows (``children``: N, ``freeze``): it preloads the workload (as a pre-fork
  server's ``--preload``), optionally calls gc.freeze(), forks N children that each run the
  workload and wait, and says ``ready`` (parent pid, every child's) once all of them ran it.

Run by path (``python -I .../memory_worker.py``) under any Python, interpkit not importable
there: it loads the sandbox's child side (``channel.py``, standard library only) from its own
folder. Its job is the first JSON line of stdin, as for every child (``sys_path``, ``modules``,
``call``: ``"module:function"`` or null). Closing stdin ends it (and its children).
"""
import gc
import importlib
import importlib.util
import os
import sys


def _channel_module():
    spec = importlib.util.spec_from_file_location(
        "_interpkit_channel", os.path.join(os.path.dirname(os.path.abspath(__file__)), "channel.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _work(job) -> None:
    for name in job["modules"]:
        importlib.import_module(name)
    if job["call"]:
        module, _, function = job["call"].partition(":")
        getattr(importlib.import_module(module), function)()


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _serve_one(job, channel) -> int:
    channel.emit("baseline", pid=os.getpid())
    sys.stdin.readline()
    try:
        _work(job)
    except BaseException as exc:
        channel.emit("error", message=_one_line(exc))
        return 1
    channel.emit("ready", pid=os.getpid())
    sys.stdin.read()
    return 0


def _fork_children(job, channel):
    """Fork the children; each runs the workload, says so on the ready pipe, and waits to be
    released. Returns their pids and the release pipe's write end."""
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    children = []
    for _ in range(job["children"]):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(release_w)
            try:
                _work(job)
                os.write(ready_w, b"r")
            except BaseException as exc:
                channel.emit("error", message=f"a forked child: {_one_line(exc)}")
                os.write(ready_w, b"e")
            os.read(release_r, 1)
            os._exit(0)
        children.append(pid)
    os.close(ready_w)
    os.close(release_r)
    for _ in children:
        answer = os.read(ready_r, 1)
        if answer != b"r":
            if not answer:
                channel.emit("error", message="a forked child ended before it ran the workload")
            os.close(release_w)
            sys.exit(1)
    return children, release_w


def _preload_and_fork(job, channel) -> int:
    try:
        _work(job)
    except BaseException as exc:
        channel.emit("error", message=_one_line(exc))
        return 1
    if job["freeze"]:
        # Objects of the preload move to a generation the collector never walks: a child's
        # collection no longer writes their headers, so their pages stay shared.
        gc.freeze()
    children, release_w = _fork_children(job, channel)
    channel.emit("ready", parent=os.getpid(), children=children)
    sys.stdin.read()
    os.close(release_w)
    for pid in children:
        os.waitpid(pid, 0)
    return 0


def main() -> int:
    channel_module = _channel_module()
    channel = channel_module.Channel()
    job = channel_module.read_job()
    sys.path[:0] = job["sys_path"]
    return _preload_and_fork(job, channel) if job.get("children") else _serve_one(job, channel)


if __name__ == "__main__":
    sys.exit(main())
