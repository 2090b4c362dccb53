"""Child-process driver for the subinterpreters backend; run *by path* under Python 3.12 to 3.15.

It must not import interpkit (interpkit is installed for 3.11 only); it loads the sandbox's
child side (``channel.py``, standard library only) by path. The parent writes one JSON job to
stdin; the driver answers with JSON lines on the file descriptor that was stdout when it
started (``channel.Channel``). Each probe step is streamed when it starts and again when it
completes (``channel.Steps``, the one step reporter), so a crash or hang is pinned on a step
and completed steps are never lost. What runs inside each subinterpreter is
``subinterp_steps.py``, loaded there by path.

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

_GUEST = os.path.dirname(os.path.abspath(__file__))
_STEPS_FILE = os.path.join(_GUEST, "subinterp_steps.py")


def _load_sandbox():
    """The sandbox's child side (interpkit.native.guest.channel), loaded by path: interpkit is
    not installed for this Python, and the channel uses the standard library only."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_interpkit_sandbox", os.path.join(_GUEST, "channel.py"))
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


# A step is one function of subinterp_steps.py, called in the subinterpreter's __main__ with
# keyword arguments; its result travels back through a file, because neither API returns
# values from 3.12 to 3.13 in the same way. The module is loaded by path once per interpreter.
_STEP_CALL = """
import json as _ik_json, sys as _ik_sys
_ik_steps = _ik_sys.modules.get("_interpkit_subinterp_steps")
if _ik_steps is None:
    import importlib.util as _ik_util
    _ik_spec = _ik_util.spec_from_file_location("_interpkit_subinterp_steps", _ik_steps_file)
    _ik_steps = _ik_util.module_from_spec(_ik_spec)
    _ik_sys.modules[_ik_spec.name] = _ik_steps
    _ik_spec.loader.exec_module(_ik_steps)
try:
    _ik_result = {"ok": True, **getattr(_ik_steps, _ik_function)(**_ik_json.loads(_ik_params))}
except BaseException as _ik_exc:
    _ik_result = {"ok": False, "type": type(_ik_exc).__name__, "message": str(_ik_exc)[:2000]}
with open(_ik_out, "w") as _ik_file:
    _ik_json.dump(_ik_result, _ik_file)
"""


def run_step(iid, function, **params):
    """Call subinterp_steps.<function>(**params) in interpreter iid; return its result dict
    (never raises for the step's own exceptions, which come back as ok=False)."""
    fd, out = tempfile.mkstemp(prefix="ik-step-", suffix=".json")
    os.close(fd)
    try:
        shared = {"_ik_out": out, "_ik_steps_file": _STEPS_FILE, "_ik_function": function,
                  "_ik_params": json.dumps(params)}
        _exec(iid, _STEP_CALL, shared)
        with open(out) as handle:
            text = handle.read()
        if not text:
            return {"ok": False, "type": "ProbeError", "message": "step wrote no result"}
        return json.loads(text)
    finally:
        os.unlink(out)


# --------------------------------------------------------------------------- probe mode

def _fail_status(result):
    return "import_error" if result.get("type") == "ImportError" else "error"


def probe_module(module, config, n, sys_path):
    name, path = module["name"], module.get("path")
    report = _SANDBOX.Steps(_CHANNEL, module=name)
    step, finish = report.step, report.finish
    interpreters = []

    try:
        for index in range(n):
            record = step("create", index, config=config)
            interpreters.append(create_interpreter(config))
            # Subinterpreters compute their own sys.path; give them the job's entries too.
            _exec(interpreters[-1], _sys_path_prefix(sys_path), None)
            record["ok"] = True
        for index, iid in enumerate(interpreters):
            record = step("import", index)
            result = run_step(iid, "import_module", name=name, path=path or "")
            record["ok"] = result["ok"]
            if not result["ok"]:
                record["error"] = f"{result['type']}: {result['message']}"
                return finish(_fail_status(result), record["error"])
            if index == 0 and result["native_imports"]:
                step("dependencies", index, native_imports=result["native_imports"], ok=True)
        seen = {}
        for index, iid in enumerate(interpreters):
            record = step("smoke", index)
            result = run_step(iid, "smoke", name=name, collect=0)
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
            result = run_step(interpreters[0], "smoke", name=name, collect=1)
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

    def submit(self, request_id, function, params):
        with self.ready:
            self.requests.append((request_id, function, params))
            self.ready.notify()

    def _loop(self):
        while True:
            with self.ready:
                while not self.requests:
                    self.ready.wait()
                request_id, function, params = self.requests.pop(0)
            if function is None:
                return
            try:
                result = run_step(self.iid, function, **params)
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
            worker.submit(request["id"], "run", {"source": request["source"]})
        elif request["op"] == "call":
            worker.submit(request["id"], "call", {"target": request["target"],
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
