"""What the subinterpreters driver runs *inside* each subinterpreter: one function per step.

``interpkit.native.guest.subinterp_driver`` loads this file by path in every subinterpreter it
creates (interpkit is not installed for that Python) and calls one function per step with
keyword arguments; each returns a JSON-able dict, which the driver's step runner sends back.
Standard library only, and nothing here may assume which interpreter it is in.
"""
from __future__ import annotations

import builtins
import gc
import importlib
import importlib.machinery
import importlib.util
import sys
import types


def import_module(name: str, path: str = "") -> dict:
    """Import ``name`` (from the extension file ``path`` when given): the compiled modules it
    pulled in come back, since a crash may be theirs, not the probed one's."""
    before = set(sys.modules)

    def native_imports():
        new = set(sys.modules) - before - {name}
        return sorted(module for module in new if module in sys.builtin_module_names
                      or str(getattr(sys.modules[module], "__file__", "") or "").endswith(".so"))

    if not path:
        importlib.import_module(name)
        return {"native_imports": native_imports()}
    # Load this binary by file: the question is whether *it* loads, not its package __init__.
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return {"native_imports": native_imports()}


def smoke(name: str, collect: int = 0) -> dict:
    """``dir()`` the module and ``repr`` every attribute; the ids of its non-scalar objects."""
    module = sys.modules[name]
    # Objects every interpreter shares by design (static builtin types, immortal singletons);
    # anything else seen with one id in two live interpreters is shared state.
    by_design = {id(v) for v in vars(builtins).values()}
    by_design.update(id(v) for v in vars(types).values() if isinstance(v, type))
    scalar = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset,
              type(Ellipsis), type(NotImplemented))
    names = dir(module)
    identities = {}
    repr_errors = []
    for attribute in names:
        try:
            value = getattr(module, attribute)
        except Exception:
            continue
        try:
            repr(value)
        except Exception as exc:
            repr_errors.append(f"{attribute}: {type(exc).__name__}")
        if attribute.startswith("__") or isinstance(value, scalar) or id(value) in by_design:
            continue
        identities[attribute] = id(value)
    if collect:
        gc.collect()
    return {"attributes": len(names), "identities": identities, "repr_errors": repr_errors[:5]}


def call(target: str, payload: str) -> dict:
    """Call ``"module:attr.path"`` with the base64 pickle ``payload`` of (args, kwargs)."""
    import base64
    import pickle

    module_name, _, attr = target.partition(":")
    function = importlib.import_module(module_name)
    for part in attr.split("."):
        function = getattr(function, part)
    args, kwargs = pickle.loads(base64.b64decode(payload))
    try:
        value = function(*args, **kwargs)
    except BaseException:
        import traceback
        return {"raised": traceback.format_exc()}
    return {"value": base64.b64encode(pickle.dumps(value)).decode()}


def run(source: str) -> dict:
    """Exec ``source`` in this interpreter's ``__main__``."""
    import traceback

    try:
        exec(compile(source, "<interpkit>", "exec"), vars(sys.modules["__main__"]))
    except BaseException:
        return {"raised": traceback.format_exc()}
    return {}
