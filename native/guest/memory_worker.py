"""One process of the memory command's "processes" and "subinterpreters" rows: it says it is up,
waits, imports the workload (and calls it) when told to go, says so, and stays until stdin closes.

Run by path (``python -I .../memory_worker.py``) under any Python, interpkit not importable
there: it loads the sandbox's child side (``channel.py``, standard library only) from its own
folder. Its job is the first JSON line of stdin, as for every child (``sys_path``, ``modules``,
``call``: ``"module:function"`` or null); the next line is the go-ahead. Records, on the
descriptor that was stdout: ``baseline`` (pid, before the workload), then ``ready`` (pid) or
``error`` (message).
"""
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


def main() -> int:
    channel_module = _channel_module()
    channel = channel_module.Channel()
    job = channel_module.read_job()
    sys.path[:0] = job["sys_path"]
    channel.emit("baseline", pid=os.getpid())
    sys.stdin.readline()
    try:
        for name in job["modules"]:
            importlib.import_module(name)
        if job["call"]:
            module, _, function = job["call"].partition(":")
            getattr(importlib.import_module(module), function)()
    except BaseException as exc:
        channel.emit("error", message=f"{type(exc).__name__}: {exc}".splitlines()[0])
        return 1
    channel.emit("ready", pid=os.getpid())
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
