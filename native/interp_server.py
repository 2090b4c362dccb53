"""Request handler run *inside* each namespaced interpreter (stdlib only).

The host sends ``pickle.dumps((op, *payload))`` and gets back ``pickle.dumps((True, value))``
or ``pickle.dumps((False, (type_name, message, traceback_text)))``; a failure to pickle the
value is reported the same way. Operations:

``("run", source)``            exec ``source`` in this interpreter's ``__main__``
``("eval", expression)``       eval ``expression`` in ``__main__``; returns the value
``("call", target, args, kwargs)``  ``target`` is ``"pkg.mod:attr.path"``; returns the result
``("sys_path", dirs, first)``  add directories to ``sys.path`` (front when ``first``)
``("info",)``                  pid, thread id, ``id(sys)`` and the guard's stripped loads
"""
from __future__ import annotations

import importlib
import os
import pickle
import sys
import threading
import traceback

_main = sys.modules["__main__"].__dict__


def resolve(target: str):
    """Return the object named ``"pkg.mod:attr.path"`` (or ``"pkg.mod.attr"``)."""
    module_name, sep, attribute = target.partition(":")
    if not sep:
        module_name, _, attribute = target.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"cannot resolve {target!r} (expected 'package.module:function')")
    value = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def _info() -> dict:
    guard = sys.modules.get("interpkit.native.guard")
    return {
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "native_thread": threading.get_native_id(),
        "sys_id": id(sys),
        "stripped_global_loads": list(guard.stripped) if guard else [],
    }


def _add_sys_path(dirs: list[str], first: bool) -> None:
    for entry in reversed(dirs) if first else dirs:
        if entry in sys.path:
            sys.path.remove(entry)
        if first:
            sys.path.insert(0, entry)
        else:
            sys.path.append(entry)
    importlib.invalidate_caches()


def _dispatch(op: str, payload: tuple):
    if op == "run":
        exec(compile(payload[0], "<interpkit run>", "exec"), _main)
        return None
    if op == "eval":
        return eval(compile(payload[0], "<interpkit eval>", "eval"), _main)
    if op == "call":
        target, args, kwargs = payload
        return resolve(target)(*args, **kwargs)
    if op == "sys_path":
        return _add_sys_path(*payload)
    if op == "info":
        return _info()
    raise ValueError(f"unknown request {op!r}")


def _failure(exc: BaseException) -> bytes:
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    text = "".join(traceback.format_exception(exc))
    return pickle.dumps((False, (name, str(exc), text)))


def handle(request: bytes) -> bytes:
    """Serve one request; never raises (BaseException included: SystemExit stays here)."""
    try:
        op, *payload = pickle.loads(request)
        value = _dispatch(op, tuple(payload))
        return pickle.dumps((True, value), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the host
        try:
            return _failure(exc)
        except BaseException as inner:  # noqa: BLE001 - e.g. an unprintable exception
            return pickle.dumps((False, (type(inner).__name__, "cannot report remote error", "")))
