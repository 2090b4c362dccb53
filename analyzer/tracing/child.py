"""The child side of `scan --trace` (standard library only: it runs under the model's Python,
which may not have interpkit installed).

Job (one JSON line on stdin): ``sandbox`` (path of interpkit's native/sandbox/__init__.py, for the
record channel), ``sys_path`` (put in front of sys.path), ``module`` (the entry's dotted name),
``callable`` (optional: a function of the module to call with no arguments). Records: one
``imported`` once the import is done, one ``called`` after the call, and ``result`` with
every module in sys.modules that has a file (and, as ``preloaded``, the names loaded before
the child started its work) and every shared object in /proc/self/maps.
An exception in the model is a ``result`` with ``error``; a crash or hang is the parent's to see.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import traceback


def _channel(sandbox_path: str):
    spec = importlib.util.spec_from_file_location("_interpkit_sandbox", sandbox_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.Channel()


def loaded_modules() -> dict[str, str]:
    out = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            out[name] = path
    return out


def mapped_shared_objects() -> list[str]:
    """Files mapped into this process whose name says shared object (.so, .so.N)."""
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    name = os.path.basename(path)
                    if path.startswith("/") and (name.endswith(".so") or ".so." in name) and not path.endswith("(deleted)"):
                        found.append(path)
    except OSError:
        pass
    return sorted(set(found))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:400] if text else type(exc).__name__


def main() -> int:
    # what site and the .pth files loaded before the model (an editable install's finder,
    # _distutils_hack): in every process of this Python, none of it the model's
    preloaded = sorted(sys.modules)
    job = json.loads(sys.stdin.readline())
    channel = _channel(job["sandbox"])
    sys.path[:0] = [p for p in job["sys_path"] if p not in sys.path[:1]]
    error = stage = None
    try:
        stage = "import"
        module = importlib.import_module(job["module"])
        channel.emit("imported", module=job["module"])
        if job.get("callable"):
            stage = "call"
            target = module
            for part in job["callable"].split("."):
                target = getattr(target, part)
            target()
            channel.emit("called", callable=job["callable"])
    except BaseException as exc:  # noqa: BLE001 - the model's own failure is the observation
        error = {"stage": stage, "error": _one_line(exc),
                 "where": "".join(traceback.format_exception(exc)[-2:-1]).strip()[:400]}
    import sysconfig

    paths = sysconfig.get_paths()
    channel.emit("result", modules=loaded_modules(), preloaded=preloaded, shared_objects=mapped_shared_objects(),
                 extension_suffixes=list(importlib.machinery.EXTENSION_SUFFIXES), error=error,
                 stdlib=sorted({os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if k in paths}),
                 site=sorted({os.path.realpath(paths[k]) for k in ("purelib", "platlib") if k in paths}))
    sys.stdout.flush()
    # Skip interpreter teardown: a model's extensions may crash in their destructors, and
    # what was loaded is already reported.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
