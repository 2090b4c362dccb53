"""Request handler run *inside* each namespaced interpreter (stdlib only).

The host sends ``pickle.dumps((op, *payload))`` and gets back ``pickle.dumps((True, value))``
or ``pickle.dumps((False, (type_name, message, traceback_text)))``; a failure to pickle the
value is reported the same way. Operations:

``("run", source)``            exec ``source`` in this interpreter's ``__main__``
``("eval", expression)``       eval ``expression`` in ``__main__``; returns the value
``("call", target, args, kwargs)``  ``target`` is ``"pkg.mod:attr.path"``; returns the result
``("sys_path", dirs, first)``  add directories to ``sys.path`` (front when ``first``)
``("info",)``                  pid, thread id, ``id(sys)``, the guard's stripped loads, threads
``("teardown_check",)``        why finalizing now would hang ("" when nothing shows it)

``apply_thread_budget(k)`` runs in the bootstrap, before any user code: see its docstring.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import pickle
import sys
import threading
import traceback

_main = sys.modules["__main__"].__dict__

# Thread-pool sizes read from the environment when a library loads (once, by its constructor),
# so each interpreter's own environment must hold them before the import. In a link-map
# namespace, putenv changes the namespace's own libc environment, which is what the namespace's
# copies of libgomp/MKL/OpenBLAS read: one interpreter's budget never leaks into another's.
BUDGET_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Pools sized by a call rather than the environment, by module: (setter, ...) run right after
# the module is first imported. torch sizes its inter-op pool from the core count alone and
# lets it be set only before first use, hence right after import.
POOL_SETTERS = {"torch": ("set_num_threads", "set_num_interop_threads")}
#: The budget this interpreter applied (0: none) and what each setter did, for ``info``.
budget = {"threads": 0, "applied": {}}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Run the pool setters of a module in POOL_SETTERS right after its first import."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.busy: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in POOL_SETTERS or fullname in self.busy:
            return None
        self.busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _SizingLoader(spec.loader, fullname, self.threads)
        return spec


class _SizingLoader(importlib.abc.Loader):
    def __init__(self, loader, name: str, threads: int) -> None:
        self.loader, self.name, self.threads = loader, name, threads

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        for setter in POOL_SETTERS[self.name]:
            try:
                getattr(module, setter)(self.threads)
                budget["applied"][f"{self.name}.{setter}"] = self.threads
            except Exception as exc:  # noqa: BLE001 - a pool already started keeps its size
                budget["applied"][f"{self.name}.{setter}"] = f"not applied ({exc})"

    def __getattr__(self, name):
        # get_resource_reader, is_package, get_filename ... stay the real loader's.
        return getattr(self.loader, name)


def apply_thread_budget(threads: int) -> None:
    """Give this interpreter's thread pools ``threads`` threads (0: leave the defaults).

    Sets the BUDGET_VARIABLES in this interpreter's environment and installs an import hook
    that calls the POOL_SETTERS of a module right after it loads.
    """
    if threads <= 0:
        return
    budget["threads"] = threads
    for name in BUDGET_VARIABLES:
        os.environ[name] = str(threads)
    sys.meta_path.insert(0, _AfterImport(threads))


def _pool_sizes() -> dict:
    sizes = {"budget": budget["threads"], "applied": dict(budget["applied"]),
             "environment": {name: os.environ.get(name) for name in BUDGET_VARIABLES}}
    for module_name, setters in POOL_SETTERS.items():
        module = sys.modules.get(module_name)
        for setter in setters:
            getter = getattr(module, setter.replace("set_", "get_"), None) if module else None
            if getter is not None:
                sizes[f"{module_name}.{getter.__name__}"] = getter()
    return sizes


def teardown_check() -> str:
    """Why Py_FinalizeEx would hang here now: it joins every non-daemon thread first."""
    main = threading.main_thread()
    waiting = [t.name for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
    if waiting:
        return (f"{len(waiting)} non-daemon thread(s) still running ({', '.join(sorted(waiting))}); "
                "Py_FinalizeEx would wait for them")
    return ""


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
    guard = sys.modules.get("interpkit.native.guest.guard")
    return {
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "native_thread": threading.get_native_id(),
        "sys_id": id(sys),
        "stripped_global_loads": list(guard.stripped) if guard else [],
        "threads": _pool_sizes(),
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
    if op == "teardown_check":
        return teardown_check()
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
