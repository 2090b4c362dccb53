"""The serving side inside each interpreter: load a torch.package model once, answer batches of requests.

Imported by name inside every namespaced interpreter (serve/server.py calls ``load`` and
``serve`` there), so it depends on the standard library and torch only. The host sends
request *indices*, not requests: each interpreter reads the requests from its own copy of
the archive, so the host never unpickles a tensor and never imports torch. Answers go back
as plain Python: tensors are turned into nested lists here.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

from interpkit.serve.weights import MappedRecords, Weights, file_backed_bytes

_MANGLE_PREFIX = re.compile(r"<torch_package_\d+>\.")
_model: Any = None
_requests: list[Any] = []


def load(archive: str, package: str, resource: str, requests_resource: str, torch_threads: int,
         weights: str = Weights.MAPPED) -> dict:
    """Load the model and the example requests from ``archive``; returns what was loaded.

    ``weights`` is ``"mapped"`` (tensor storages are slices of one file mapping of the archive,
    shared by every interpreter through the page cache; serve/weights.py) or
    ``"copied"`` (torch.package's own reading: a heap copy per interpreter).
    """
    global _model, _requests
    import torch
    from torch.package import PackageImporter

    weights = Weights(weights)   # a ValueError names an unknown choice
    if torch_threads > 0:
        # N interpreters on few cores: intra-op threads of each would only fight each other.
        torch.set_num_threads(torch_threads)
    importer = PackageImporter(archive)
    records = None
    if weights is Weights.MAPPED:
        records = importer.zip_reader = MappedRecords(importer.zip_reader, archive)
    with warnings.catch_warnings():
        # torch.package itself still goes through TypedStorage; the warning is not the model's.
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        model = importer.load_pickle(package, resource)
    if not callable(model):
        raise TypeError(f"{package}/{resource} holds a {type(model).__name__}, which is not callable")
    requests = importer.load_pickle(package, requests_resource)
    if not isinstance(requests, (list, tuple)) or not requests:
        raise TypeError(f"{package}/{requests_resource} must hold a non-empty list of requests")
    _model, _requests = model, list(requests)
    kind = type(model)
    tensors = reachable_tensors(model)
    loaded_weights = {"weights": str(weights), **(records.summary() if records is not None else {}),
                      # Where the model's own tensors live now, as /proc/self/maps says.
                      **file_backed_bytes(tensors, archive)}
    return {"model_type": _MANGLE_PREFIX.sub("", f"{kind.__module__}.{kind.__qualname__}"),
            "example_requests": len(_requests), "batch_method": callable(getattr(model, "batch", None)),
            "torch_threads": torch.get_num_threads(), "weights": loaded_weights}


def reachable_tensors(root: Any, limit: int = 200_000) -> list[Any]:
    """The tensors reachable from ``root`` through containers and instance attributes (at most
    ``limit`` objects visited); classes, modules and functions are not entered, so this is the
    model's own data, whatever holds it (an nn.Module, a plain object around one, a dict)."""
    import gc
    import types

    import torch

    opaque = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
              types.CodeType, types.FrameType, str, bytes, int, float)
    found: list[Any] = []
    seen: set[int] = set()
    pending = [root]
    while pending and len(seen) < limit:
        value = pending.pop()
        if id(value) in seen or isinstance(value, opaque):
            continue
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            found.append(value)
            continue
        pending.extend(gc.get_referents(value))
    return found


def serve(indices: list[int]) -> list[Any]:
    """Answer requests ``indices`` (taken modulo the example requests), in order, as plain Python."""
    if _model is None:
        raise RuntimeError("cannot serve (no model loaded in this interpreter)")
    requests = [_requests[i % len(_requests)] for i in indices]
    batch = getattr(_model, "batch", None)
    answers = batch(requests) if len(requests) > 1 and callable(batch) else [_model(r) for r in requests]
    return [plain(answer) for answer in answers]


def plain(value: Any) -> Any:
    """``value`` with tensors turned into (nested) lists, so that the host can unpickle it without torch."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [plain(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    tolist = getattr(value, "tolist", None)
    if tolist is not None and type(value).__module__.startswith("torch"):
        return tolist()
    return value
