"""The memory command's "forked" rows: a process that preloads the workload, then forks N children.

It imports the workload and runs the call once (the preload, as a pre-fork server's
``--preload``), optionally calls gc.freeze(), then forks N children that each run the call
(their share of the work) and wait. Run by path (``python -I .../memory_forked.py``) under any
Python, interpkit not importable there: it loads the sandbox's child side (``channel.py``,
standard library only) from its own folder. Its job is the first JSON line of stdin, as for
every child (``sys_path``, ``modules``, ``call``, ``children``, ``freeze``). Records, on the
descriptor that was stdout: ``ready`` (parent pid and every child's) once all children ran the
workload, or ``error`` (message). Closing stdin ends them all.
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


def _fork_children(job, channel) -> list:
    """Fork the children; each runs the workload, says so on the ready pipe, and waits to be released."""
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


def main() -> int:
    channel_module = _channel_module()
    channel = channel_module.Channel()
    job = channel_module.read_job()
    sys.path[:0] = job["sys_path"]
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


if __name__ == "__main__":
    sys.exit(main())
