"""Steps of a namespaces probe that run *inside* an interpreter (stdlib only).

``interpkit.native.sandbox.probe`` calls these through ``Runtime.call``; each returns plain data.
"""
from __future__ import annotations

import importlib
import sys

#: Set on the probed module in one interpreter and looked for in the others.
MARKER = "_interpkit_probe_marker"


def import_module(name: str) -> str:
    """Import ``name``; return the file it came from (or its repr)."""
    module = importlib.import_module(name)
    return str(getattr(module, "__file__", None) or repr(module))


def import_module_calling_ops(name: str) -> dict:
    """Import ``name``; when torch was imported first and the import registered operators with
    its dispatcher (a pybind11 module that is also a TORCH_LIBRARY op library, such as
    detectron2._C), call one of them as ``load_op_library`` does: its attributes alone never
    reach the registered kernels."""
    torch = sys.modules.get("torch")
    before = set(torch._C._dispatch_get_all_op_names()) if torch is not None else None
    out: dict = {"file": import_module(name)}
    if before is not None:
        registered = sorted(set(torch._C._dispatch_get_all_op_names()) - before)
        if registered:
            out.update(registered=len(registered), namespaces=sorted({n.partition("::")[0] for n in registered}),
                       call=_call_one(torch, registered))
    return out


def smoke(name: str) -> dict:
    """``dir()`` the module and ``repr`` every public attribute.

    ``identities`` maps each public attribute to ``id(value)``: two live objects in one
    process have distinct ids, so an equal id seen from two interpreters at once means the
    object itself is shared between them.
    """
    module = sys.modules[name]
    names = [attr for attr in dir(module) if not attr.startswith("_")]
    identities: dict[str, int] = {}
    repr_errors: list[str] = []
    for attr in names:
        try:
            value = getattr(module, attr)
            repr(value)
        except Exception as exc:  # noqa: BLE001 - a failing repr is an observation
            repr_errors.append(f"{attr}: {type(exc).__name__}: {exc}"[:300])
            continue
        if not isinstance(value, (int, float, str, bytes, bool, type(None))):
            # Small ints, interned strings and None are per-interpreter too, but equal
            # values may share ids within one interpreter; only objects are compared.
            identities[attr] = id(value)
    return {"attributes": len(names), "identities": identities, "repr_errors": repr_errors}


def set_marker(name: str, value: str) -> None:
    setattr(sys.modules[name], MARKER, value)


def get_marker(name: str) -> str | None:
    return getattr(sys.modules[name], MARKER, None)


def load_op_library(path: str) -> dict:
    """Load an op library the way torch does (``torch.ops.load_library``), then call one of
    the operators it registered; the library is then reachable as ``sys.modules[path]``, a
    module whose attributes are its ``torch.ops.<namespace>`` objects, so ``smoke`` and the
    shared-state markers work on it as on an imported module.

    The operator is called with small arguments built from its schema (a 4x4 tensor per
    ``Tensor``, 1 per int, 0.5 per float...). A kernel may still reject them (a shape check);
    that is a Python exception from a dispatched call, recorded, and the next operator is
    tried: what is observed is that dispatch into the library works, or how it fails.
    """
    import types

    import torch

    before = set(torch._C._dispatch_get_all_op_names())
    torch.ops.load_library(path)
    registered = sorted(set(torch._C._dispatch_get_all_op_names()) - before)
    namespaces = sorted({name.partition("::")[0] for name in registered})
    module = types.ModuleType(path)
    for namespace in namespaces:
        setattr(module, namespace, getattr(torch.ops, namespace))
    sys.modules[path] = module
    call = _call_one(torch, registered)
    module.called = call
    return {"file": path, "registered": len(registered), "namespaces": namespaces, "call": call}


def _call_one(torch, names: list[str]) -> dict:
    tried: list[str] = []
    for name in sorted(names, key=lambda n: (n.count("_") > 0 and n.split("::")[1].startswith("_"), n)):
        namespace, _, op = name.partition("::")
        for schema in torch._C._jit_get_schemas_for_operator(name):
            overload = getattr(getattr(torch.ops, namespace), op)
            error = None
            # Tensor shapes to try: all 4x4; boxes-like 4x4 then 4 (nms: dets [K, 4], scores [K]); all 4.
            for shapes in (((4, 4),), ((4, 4), (4,)), ((4,),)):
                args = _arguments(torch, schema, shapes)
                if args is None:
                    break
                try:
                    result = overload(*args)
                except Exception as exc:  # noqa: BLE001 - a kernel's own argument check, observed
                    error = f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                    continue
                return {"op": name, "returned": type(result).__name__, "rejected": tried[:5]}
            if error:
                tried.append(error)
            break
        if len(tried) >= 8:
            break
    return {"op": None, "rejected": tried[:5]}


def _arguments(torch, schema, shapes: tuple[tuple[int, ...], ...]) -> list | None:
    """Positional arguments for ``schema`` or None when one has a type we cannot make; the
    n-th Tensor gets ``shapes[n]`` (the last shape for the rest)."""
    args = []
    tensors = 0

    def tensor():
        nonlocal tensors
        shape = shapes[min(tensors, len(shapes) - 1)]
        tensors += 1
        return torch.rand(*shape)

    for argument in schema.arguments:
        if argument.kwarg_only and argument.has_default_value():
            continue
        kind = str(argument.type)
        if kind.endswith("?"):
            args.append(None)
        elif kind == "Tensor":
            args.append(tensor())
        elif kind in ("int", "SymInt"):
            args.append(1)
        elif kind == "float":
            args.append(0.5)
        elif kind == "bool":
            args.append(False)
        elif kind in ("int[]", "SymInt[]") or kind.startswith(("int[", "SymInt[")):
            args.append([1, 1])
        elif kind == "str":
            args.append("")
        elif kind == "Tensor[]":
            args.append([tensor()])
        else:
            return None
    return args
