"""Which loaded image serves a module in N legacy subinterpreters (a sandboxed child).

Run as ``python -m interpkit.native.guest.legacy_probe`` with the sandbox's JSON job line:
``module``, ``source`` (the extension file), ``n``, ``root`` and ``repo`` (put on each
interpreter's ``sys.path``), ``out_dir`` and, to import through an import hook, ``hook``: a
``"package.module:function"`` called in each interpreter before the import with ``hook_args``
(``interpkit patch``'s re-verification passes its private-copy finder here).

Each interpreter (shared GIL, single-phase modules allowed) imports the module and reports the
address of its ``PyInit_*`` function (``image_of``). One address means one loaded image serves
every interpreter, so its C statics (counters, caches, static types, GNU_UNIQUE objects) are
shared, whatever the module's ``__dict__`` looks like; a private copy per interpreter shows one
address each. Steps are reported with the sandbox's one reporter (``channel.Steps``).

Standard library only, and it imports nothing of interpkit itself: the hook is named by the
parent, so this module stays below the layers that provide one.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import tempfile


def _legacy_api():
    """(create, run) for legacy (shared-GIL) subinterpreters on this Python."""
    try:
        import _interpreters as api     # 3.13+
    except ImportError:
        import _xxsubinterpreters as api  # 3.12

        def create():
            return api.create(isolated=False)

        return create, api.run_string

    def run(iid, code):
        failure = api.exec(iid, code)
        if failure is not None:
            raise RuntimeError(f"{failure.type.__name__}: {failure.msg}")

    return (lambda: api.create("legacy")), run


def image_of(module: str, source: str, out: str, hook: str | None = None, hook_args=()) -> None:
    """In a subinterpreter: import ``module`` (through ``hook`` when given, else from ``source``
    by path) and write {image: its PyInit_* address, file: what it was loaded from} to ``out``."""
    import ctypes

    if hook:
        target, _, function = hook.partition(":")
        getattr(importlib.import_module(target), function)(*hook_args)
        loaded = importlib.import_module(module)
    else:
        spec = importlib.util.spec_from_file_location(module, source)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
    image = ctypes.CDLL(loaded.__file__)   # the already-loaded image: dlopen hands back the same handle
    address = ctypes.cast(getattr(image, "PyInit_" + module.rpartition(".")[2]), ctypes.c_void_p).value
    with open(out, "w") as fh:
        json.dump({"image": address, "file": loaded.__file__}, fh)


def main() -> int:
    # Loaded as a module of the interpkit tree (the parent puts its root on PYTHONPATH).
    from interpkit.native.guest.channel import Channel, Steps, no_core_dumps, read_job

    report = Steps(Channel())
    job = read_job()
    no_core_dumps()
    create, run = _legacy_api()
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(job["n"]):
            out = os.path.join(tmp, f"{index}.json")
            call = (job["module"], job["source"], out, job.get("hook"), list(job.get("hook_args", ())))
            # The only source text an interpreter runs: put the tree on its path and call this module.
            code = (f"import sys; sys.path[:0] = {[job['root'], job['repo']]!r}\n"
                    f"from interpkit.native.guest.legacy_probe import image_of\n"
                    f"image_of(*{call!r})\n")
            report.step("create", index)
            iid = create()
            report.done(ok=True)
            record = report.step("import", index)
            try:
                run(iid, code)
            except Exception as exc:  # noqa: BLE001 - the import's failure is the observation
                report.done(ok=False, error=f"interpreter {index}: {exc}"[:500])
                return report.finish("import_error", record["error"],
                                     files=[r["file"] for r in results], images=len({r["image"] for r in results}))
            with open(out) as fh:
                results.append(json.load(fh))
            report.done(ok=True, file=results[-1]["file"])
    images = {r["image"] for r in results}
    shared = len(images) < len(results)
    report.step("shared_state", images=len(images))
    report.done(ok=not shared)
    return report.finish("ok", f"{len(results)} interpreters ran {len(images)} loaded image(s) of the module"
                         if shared else "", ["loaded image"] if shared else [],
                         files=[r["file"] for r in results], images=len(images))


if __name__ == "__main__":
    sys.exit(main())
