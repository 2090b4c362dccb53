"""Child-process driver for the subinterpreters backend; run *by path* under Python 3.12 to 3.15.

It must not import interpkit (interpkit is installed for 3.11 only); it loads the sandbox's
child side (``sandbox.py``, standard library only) by path. The parent writes one JSON job to
stdin; the driver answers with JSON lines on the file descriptor that was stdout when it
started (``sandbox.Channel``). Each probe step is streamed when it starts and again when it
completes, so a crash or hang is pinned on a step and completed steps are never lost.

Modes:
  probe     import modules in N subinterpreters of one configuration and use them
  baseline  import modules in the main interpreter (tells "broken anyway" from "refused")
  bench     a Python-bound loop in 1 vs N own-GIL interpreters on threads, and N threads in one
  serve     keep N interpreters alive and answer run/call requests (SubinterpreterRuntime)
"""
import json
import os
import sys
import tempfile
import threading
import time

# --------------------------------------------------------------------------- protocol

def _load_sandbox():
    """interpkit.native.sandbox, loaded by path: interpkit is not installed for this Python, and
    the sandbox's child side (the record channel) uses the standard library only."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_interpkit_sandbox", os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


_SANDBOX = _load_sandbox()
_CHANNEL = _SANDBOX.Channel()


def emit(event, **fields):
    _CHANNEL.emit(event, **fields)


# --------------------------------------------------------------------------- the three APIs
# An interpreter is whatever create_interpreter returns: a concurrent.interpreters.Interpreter
# on 3.14+, an interpreter id on 3.12/3.13; only the three functions below look inside it.

try:
    from concurrent import interpreters as _public   # 3.14+: PEP 734, the public API
except ImportError:
    _public = None

if _public is not None:
    API = "concurrent.interpreters"

    def create_interpreter(config):
        if config == "isolated":
            return _public.create()
        if config != "legacy":
            raise ValueError(f"unknown configuration {config!r}")
        # The public API creates only isolated interpreters; the legacy preset is asked from
        # the module it is built on, and the handle is the public Interpreter all the same.
        import _interpreters
        return _public.Interpreter(_interpreters.create("legacy", reqrefs=True), _ownsref=True)

    def _exec(interp, code, shared):
        if shared:
            interp.prepare_main(shared)
        try:
            interp.exec(code)
        except _public.ExecutionFailed as exc:
            raise RuntimeError(f"{exc.excinfo.type.__name__}: {exc.excinfo.msg}") from None

    def destroy_interpreter(interp):
        interp.close()

else:
    try:
        import _interpreters as _api   # 3.13
        API = "_interpreters"

        def create_interpreter(config):
            return _api.create(config)

        def _exec(iid, code, shared):
            failure = _api.exec(iid, code, shared)
            if failure is not None:
                raise RuntimeError(f"{failure.type.__name__}: {failure.msg}")

    except ImportError:
        import _xxsubinterpreters as _api   # 3.12: no config objects, only isolated=True/False
        API = "_xxsubinterpreters"

        def create_interpreter(config):
            if config not in ("isolated", "legacy"):
                raise ValueError(f"unknown configuration {config!r}")
            return _api.create(isolated=(config == "isolated"))

        def _exec(iid, code, shared):
            _api.run_string(iid, code, shared)

    def destroy_interpreter(iid):
        _api.destroy(iid)


# Each step body is the text of a function `_ik_step()` returning a JSON-able dict. It runs in
# the subinterpreter's __main__; its result travels back through a file, because the APIs of
# 3.12, 3.13 and 3.14+ do not return values in the same way.
_STEP_TEMPLATE = """
import json as _ik_json
{body}
try:
    _ik_result = {{"ok": True, **_ik_step()}}
except BaseException as _ik_exc:
    _ik_result = {{"ok": False, "type": type(_ik_exc).__name__, "message": str(_ik_exc)[:2000]}}
with open(_ik_out, "w") as _ik_file:
    _ik_json.dump(_ik_result, _ik_file)
"""


def run_step(iid, body, **params):
    """Run a step body in interpreter iid; return its result dict (never raises for the
    step's own exceptions, which come back as ok=False)."""
    fd, out = tempfile.mkstemp(prefix="ik-step-", suffix=".json")
    os.close(fd)
    try:
        shared = {"_ik_out": out}
        shared.update({f"_ik_{k}": v for k, v in params.items()})
        _exec(iid, _STEP_TEMPLATE.format(body=body), shared)
        with open(out) as handle:
            text = handle.read()
        if not text:
            return {"ok": False, "type": "ProbeError", "message": "step wrote no result"}
        return json.loads(text)
    finally:
        os.unlink(out)


# --------------------------------------------------------------------------- step bodies

IMPORT_BODY = """
def _ik_step():
    import importlib, importlib.machinery, importlib.util, sys
    before = set(sys.modules)

    def native_imports():
        # Compiled modules this import pulled in: a crash may be theirs, not the probed one's.
        new = set(sys.modules) - before - {_ik_name}
        return sorted(name for name in new if name in sys.builtin_module_names
                      or str(getattr(sys.modules[name], "__file__", "") or "").endswith(".so"))

    if not _ik_path:
        importlib.import_module(_ik_name)
        return {"native_imports": native_imports()}
    # Load this binary by file: the question is whether *it* loads, not its package __init__.
    loader = importlib.machinery.ExtensionFileLoader(_ik_name, _ik_path)
    spec = importlib.util.spec_from_file_location(_ik_name, _ik_path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_ik_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(_ik_name, None)
        raise
    return {"native_imports": native_imports()}
"""

SMOKE_BODY = """
def _ik_step():
    import builtins, gc, sys, types
    module = sys.modules[_ik_name]
    # Objects every interpreter shares by design (static builtin types, immortal singletons);
    # anything else seen with one id in two live interpreters is shared state.
    by_design = {id(v) for v in vars(builtins).values()}
    by_design.update(id(v) for v in vars(types).values() if isinstance(v, type))
    scalar = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset,
              type(Ellipsis), type(NotImplemented))
    names = dir(module)
    identities = {}
    repr_errors = []
    for name in names:
        try:
            value = getattr(module, name)
        except Exception:
            continue
        try:
            repr(value)
        except Exception as exc:
            repr_errors.append(f"{name}: {type(exc).__name__}")
        if name.startswith("__") or isinstance(value, scalar) or id(value) in by_design:
            continue
        identities[name] = id(value)
    if _ik_collect:
        gc.collect()
    return {"attributes": len(names), "identities": identities, "repr_errors": repr_errors[:5]}
"""


# --------------------------------------------------------------------------- probe mode

def _fail_status(result):
    return "import_error" if result.get("type") == "ImportError" else "error"


def probe_module(module, config, n, sys_path):
    name, path = module["name"], module.get("path")
    steps = []
    interpreters = []

    def completed():
        # The previous step, once it recorded how it went, is streamed again as done.
        if steps and "ok" in steps[-1] and not steps[-1].get("_streamed"):
            emit("step_done", module=name, seq=len(steps), **steps[-1])
            steps[-1]["_streamed"] = True

    def step(label, interpreter=None, **extra):
        completed()
        record = {"step": label}
        if interpreter is not None:
            record["interpreter"] = interpreter
        record.update(extra)
        steps.append(record)
        emit("step", module=name, seq=len(steps), **record)
        return record

    def finish(status, message="", shared=()):
        completed()
        for record in steps:
            record.pop("_streamed", None)
        emit("result", module=name, outcome={"status": status, "message": message,
                                              "signal": None, "steps": steps,
                                              "shared_state": sorted(shared)})

    try:
        for index in range(n):
            record = step("create", index, config=config)
            interpreters.append(create_interpreter(config))
            # Subinterpreters compute their own sys.path; give them the job's entries too.
            _exec(interpreters[-1], _sys_path_prefix(sys_path), None)
            record["ok"] = True
        for index, iid in enumerate(interpreters):
            record = step("import", index)
            result = run_step(iid, IMPORT_BODY, name=name, path=path or "")
            record["ok"] = result["ok"]
            if not result["ok"]:
                record["error"] = f"{result['type']}: {result['message']}"
                return finish(_fail_status(result), record["error"])
            if index == 0 and result["native_imports"]:
                step("dependencies", index, native_imports=result["native_imports"], ok=True)
        seen = {}
        for index, iid in enumerate(interpreters):
            record = step("smoke", index)
            result = run_step(iid, SMOKE_BODY, name=name, collect=0)
            record["ok"] = result["ok"]
            if not result["ok"]:
                record["error"] = f"{result['type']}: {result['message']}"
                return finish("error", f"smoke failed in interpreter {index}: {record['error']}")
            record["attributes"] = result["attributes"]
            if result["repr_errors"]:
                record["repr_errors"] = result["repr_errors"]
            for attr, ident in result["identities"].items():
                seen.setdefault(attr, []).append(ident)
        # Two live objects in one process have distinct ids, so an attribute whose object has
        # the same id in two interpreters at once *is* one object shared between them.
        shared = [attr for attr, ids in seen.items() if len(ids) != len(set(ids))]
        step("shared_state", shared=sorted(shared), ok=not shared)
        if len(interpreters) >= 2:
            record = step("destroy", 0)
            destroy_interpreter(interpreters.pop(0))
            record["ok"] = True
            record = step("use_after_destroy", 1)
            result = run_step(interpreters[0], SMOKE_BODY, name=name, collect=1)
            record["ok"] = result["ok"]
            if not result["ok"]:
                record["error"] = f"{result['type']}: {result['message']}"
                return finish("error", f"use after destroying another interpreter failed: "
                                       f"{record['error']}", shared)
        # Tear the rest down inside the probe, so a crash in teardown is pinned on a step.
        while interpreters:
            record = step("destroy", n - len(interpreters))
            destroy_interpreter(interpreters[0])
            interpreters.pop(0)
            record["ok"] = True
        return finish("ok", "", shared)
    except Exception as exc:   # the API itself refused (e.g. cannot create an interpreter)
        return finish("error", f"{type(exc).__name__}: {exc}")
    finally:
        for iid in interpreters:
            try:
                destroy_interpreter(iid)
            except Exception:
                pass


def _sys_path_prefix(sys_path):
    return "import sys\nsys.path[:0] = %r\n" % (list(sys_path),)


def run_probe(job):
    sys.path[:0] = job.get("sys_path", [])
    for module in job["modules"]:
        probe_module(module, job["config"], job["n"], job.get("sys_path", []))


# --------------------------------------------------------------------------- baseline mode

def run_baseline(job):
    import importlib.machinery
    import importlib.util
    sys.path[:0] = job.get("sys_path", [])
    for module in job["modules"]:
        name, path = module["name"], module.get("path")
        emit("step", module=name, step="import", interpreter="main")
        try:
            if path:
                loader = importlib.machinery.ExtensionFileLoader(name, path)
                spec = importlib.util.spec_from_file_location(name, path, loader=loader)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                spec.loader.exec_module(mod)
            else:
                importlib.import_module(name)
        except BaseException as exc:
            status = "import_error" if isinstance(exc, ImportError) else "error"
            emit("result", module=name, outcome={"status": status,
                                                  "message": f"{type(exc).__name__}: {exc}"[:2000],
                                                  "signal": None, "steps": [], "shared_state": []})
        else:
            emit("result", module=name, outcome={"status": "ok", "message": "", "signal": None,
                                                  "steps": [], "shared_state": []})


# --------------------------------------------------------------------------- bench mode

BENCH_SOURCE = """
def _ik_work(count):
    total = 0
    for i in range(count):
        total += i * i % 7
    return total
_ik_work({loops})
"""


def _timed_threads(targets):
    threads = [threading.Thread(target=t) for t in targets]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def run_bench(job):
    n, loops, repeat = job["n"], job["loops"], job.get("repeat", 3)
    code = BENCH_SOURCE.format(loops=loops)
    interpreters = [create_interpreter("isolated") for _ in range(n)]
    try:
        _exec(interpreters[0], code, None)   # warm-up
        one = min(_timed_threads([lambda: _exec(interpreters[0], code, None)])
                  for _ in range(repeat))
        many = min(_timed_threads([(lambda iid=iid: _exec(iid, code, None)) for iid in interpreters])
                   for _ in range(repeat))
        namespace = {}
        exec(code.replace(f"_ik_work({loops})", ""), namespace)
        work = namespace["_ik_work"]
        threads = min(_timed_threads([lambda: work(loops)] * n) for _ in range(repeat))
    finally:
        for iid in interpreters:
            destroy_interpreter(iid)
    emit("result", n=n, loops=loops, one_interpreter_s=one, n_interpreters_s=many,
         n_threads_one_interpreter_s=threads, cpu_count=os.cpu_count(),
         python=".".join(map(str, sys.version_info[:3])))


# --------------------------------------------------------------------------- serve mode

CALL_BODY = """
def _ik_step():
    import base64, importlib, pickle
    module_name, _, attr = _ik_target.partition(":")
    target = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    args, kwargs = pickle.loads(base64.b64decode(_ik_payload))
    try:
        value = target(*args, **kwargs)
    except BaseException:
        import traceback
        return {"raised": traceback.format_exc()}
    return {"value": base64.b64encode(pickle.dumps(value)).decode()}
"""

RUN_BODY = """
def _ik_step():
    import traceback
    try:
        exec(compile(_ik_source, "<interpkit>", "exec"), globals())
    except BaseException:
        return {"raised": traceback.format_exc()}
    return {}
"""


class _Worker:
    """One thread serves one interpreter for its whole life, as the namespaces runtime does."""

    def __init__(self, config, sys_path):
        self.requests = []
        self.ready = threading.Condition()
        self.iid = create_interpreter(config)
        if sys_path:
            _exec(self.iid, _sys_path_prefix(sys_path), None)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def submit(self, request_id, body, params):
        with self.ready:
            self.requests.append((request_id, body, params))
            self.ready.notify()

    def _loop(self):
        while True:
            with self.ready:
                while not self.requests:
                    self.ready.wait()
                request_id, body, params = self.requests.pop(0)
            if body is None:
                return
            try:
                result = run_step(self.iid, body, **params)
            except Exception as exc:
                result = {"ok": False, "type": type(exc).__name__, "message": str(exc)}
            emit("reply", id=request_id, result=result)


def run_serve(job):
    workers = [_Worker(job["config"], job.get("sys_path", [])) for _ in range(job["n"])]
    emit("ready", n=len(workers))
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "close":
            break
        worker = workers[request["interpreter"]]
        if request["op"] == "run":
            worker.submit(request["id"], RUN_BODY, {"source": request["source"]})
        elif request["op"] == "call":
            worker.submit(request["id"], CALL_BODY, {"target": request["target"],
                                                     "payload": request["payload"]})
    for worker in workers:
        worker.submit(None, None, None)
    for worker in workers:
        worker.thread.join()
        destroy_interpreter(worker.iid)
    emit("closed")


def main():
    job = _SANDBOX.read_job()
    # The parent bounds resident memory from outside (an address-space cap would refuse
    # libraries that reserve more than they use); crashes are expected, core files are not.
    _SANDBOX.no_core_dumps()
    mode = job["mode"]
    if mode == "probe":
        run_probe(job)
    elif mode == "baseline":
        run_baseline(job)
    elif mode == "bench":
        run_bench(job)
    elif mode == "serve":
        run_serve(job)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    emit("done")


if __name__ == "__main__":
    main()
