"""The copies runtime: N interpreters in one process, each from its own renamed libpython copy.

torch::deploy's mechanism, in the base link-map namespace (no dlmopen, so no glibc namespace
ceiling): interpreter k runs from ``<soname>.ik000k``, a relinked copy of the running
libpython loaded ``RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND`` (native/copies/_copies.c), on one dedicated
OS thread for its whole life. Every extension it imports is loaded from interpreter k's own
relinked copy (native/guest/copies_loader.py, templates from native/copies/templates.py), so ``Py*``
binds to copy k although the host's libpython is in the global scope, and C statics are per
interpreter. The API is the namespaces runtime's (``interpkit.native.Runtime``).

Example::

    from interpkit.native.copies.runtime import CopiesRuntime

    with CopiesRuntime(32) as rt:
        rt.call_all("os:getpid")                 # 32 x the same pid
        rt.map("math:factorial", range(64))

The limits it has (measured, native/README.md "The copies runtime"): one pthread key per
interpreter, so about 1,000 per process (PTHREAD_KEYS_MAX = 1024; the start error says so when
they run out); memory (each interpreter maps its own libpython and extension copies, whose text
the page cache cannot share: ~12 MiB for a bare interpreter, ~45 MiB with numpy); 10,000 copy
ids per process lifetime; and the static TLS that extensions built with initial-exec TLS take
per copy (an 8-byte block: 214 copies), where the interpreter that runs out gets a per-module
ImportError naming the cause and the others go on. torch cannot run here (IK308).
"""
from __future__ import annotations

import os
import pickle
import selectors
import shutil
import sys
import sysconfig
import tempfile
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from interpkit.native.copies.templates import PLACEHOLDER, CopyRefused, TemplateMaker, copy_soname_stem
from interpkit.native.errors import InterpreterClosed, RemoteError, RuntimeStartError
from interpkit.native.protocol import LoadedObject, RuntimeTeardown, checked_start
from interpkit.native.requests import InterpreterRequests

_LOADER = Path(__file__).parent.parent / "guest" / "copies_loader.py"

# Run in each interpreter's __main__. The loader goes in first, by file path and before any
# package import, since importing a package may already load an extension (e.g. _opcode
# through dataclasses -> inspect -> dis). site runs after it (the C side turned it off).
_BOOTSTRAP = """\
import sys as _ik_sys
import importlib.util as _ik_util
_ik_spec = _ik_util.spec_from_file_location("_interpkit_copies_loader", {loader!r})
_ik_loader = _ik_util.module_from_spec(_ik_spec)
_ik_sys.modules["_interpkit_copies_loader"] = _ik_loader
_ik_spec.loader.exec_module(_ik_loader)
_ik_loader.install({copy_id}, {directory!r}, ({request_fd}, {answer_fd}), {stdlib!r}, {only!r})
import site as _ik_site
_ik_site.main()
_ik_sys.path[:] = {sys_path!r} + [p for p in _ik_sys.path if p not in {sys_path!r}]
from interpkit.native.guest.interp_server import handle as _ik_handle
"""


# Copy ids are unique in the process for its whole life: an extension copy finds its libpython
# copy by soname among *all* loaded objects, so two runtimes (or a closed one whose copy glibc
# kept) using the same number would bind one runtime's extensions to the other's libpython
# (measured: free(): invalid pointer from the other copy's _PyObject_Free).
_ids_lock = threading.Lock()
_next_id = 0
MAX_COPY_ID = 9999            # four digits fill the placeholder's width


def _take_copy_ids(n: int) -> list[int]:
    global _next_id
    with _ids_lock:
        if _next_id + n > MAX_COPY_ID + 1:
            raise RuntimeStartError(f"cannot start {n} more interpreters (this process has used "
                                    f"{_next_id} of its {MAX_COPY_ID + 1} libpython copy names; "
                                    "run further runtimes in a child process)")
        ids = list(range(_next_id, _next_id + n))
        _next_id += n
        return ids


_runtimes: "weakref.WeakSet[CopiesRuntime]" = weakref.WeakSet()


def _abandon_after_fork() -> None:
    # A forked child has the copies mapped but none of the worker threads or the template
    # service: its runtimes are unusable, and closing one would wait for threads that do not
    # exist there.
    for runtime in list(_runtimes):
        runtime._abandon()


os.register_at_fork(after_in_child=_abandon_after_fork)


_WORKDIR_PREFIX = "interpkit-copies-"


def _sweep_stale_workdirs() -> None:
    """Remove the copies of runtimes whose process died without closing them (a crash, a
    kill): their folder names carry the pid."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{_WORKDIR_PREFIX}*-*"):
        pid = folder.name[len(_WORKDIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass                    # someone else's live process


def _keys_hint() -> str:
    """Why an interpreter may fail to initialize here: each libpython copy takes one pthread
    key (its GIL-state TSS key) from the process's PTHREAD_KEYS_MAX (1024), and CPython reports
    running out as "_PyGILState_Init: memory allocation failed"."""
    import ctypes

    libc = ctypes.CDLL(None)
    key = ctypes.c_uint()
    if libc.pthread_key_create(ctypes.byref(key), None) != 0:
        return ("; the process has no pthread keys left: each interpreter takes one, and glibc "
                "allows 1024 per process (PTHREAD_KEYS_MAX), so about 1,000 interpreters is the ceiling")
    libc.pthread_key_delete(key)
    return ""


def manifest_extensions(manifest: Path) -> list[Path]:
    """The extension files an ``interpkit-copies.json`` lists (paths relative to its folder)."""
    import json

    try:
        data = json.loads(Path(manifest).read_text())
        modules = data["modules"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeStartError(f"cannot read copies manifest {manifest} ({exc})") from None
    return [(Path(manifest).parent / rel).resolve() for rel in modules.values()]


def _stdlib_extensions() -> Path:
    return Path(sysconfig.get_config_var("DESTSHARED") or sysconfig.get_paths()["platstdlib"])


class _TemplateService:
    """The host side of the loaders' pipes: one request line (an extension's path) in, one
    answer line (template paths, or ``!reason``) out, served by one host thread."""

    def __init__(self, maker: TemplateMaker, n: int) -> None:
        self.maker = maker
        self.selector = selectors.DefaultSelector()
        self.pipes: list[tuple[int, int]] = []       # what interpreter k holds: (request_w, answer_r)
        self._host: list[tuple[int, int]] = []
        for index in range(n):
            request_r, request_w = os.pipe()
            answer_r, answer_w = os.pipe()
            self.pipes.append((request_w, answer_r))
            self._host.append((request_r, answer_w))
            self.selector.register(request_r, selectors.EVENT_READ, (index, answer_w))
        self._wake_r, self._wake_w = os.pipe()
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._buffers: dict[int, bytes] = {}
        self.refused: dict[str, str] = {}
        self._thread = threading.Thread(target=self._serve, name="interpkit-copies-templates", daemon=True)
        self._thread.start()

    def _answer(self, source: str) -> str:
        try:
            return self.maker.extension(Path(source)).wire()
        except CopyRefused as exc:
            self.refused[source] = str(exc)
            return "!" + str(exc)
        except Exception as exc:  # noqa: BLE001 - a relink failure is that module's outcome
            reason = f"cannot copy {Path(source).name} ({type(exc).__name__}: {exc})".replace("\n", " ")
            self.refused[source] = reason
            return "!" + reason

    def _serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    return
                index, answer_w = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    self.selector.unregister(key.fd)
                    continue
                buffer = self._buffers.get(key.fd, b"") + chunk
                *lines, rest = buffer.split(b"\n")
                self._buffers[key.fd] = rest
                for line in lines:
                    os.write(answer_w, (self._answer(line.decode()) + "\n").encode())

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=10)
        for fd in [self._wake_r, self._wake_w, *(fd for pair in self.pipes + self._host for fd in pair)]:
            try:
                os.close(fd)
            except OSError:
                pass


class _Interpreters:
    """The copies binding's Interpreter objects behind the per-index calls RuntimeTeardown makes
    (the namespaces binding answers the same calls for its one Runtime object)."""

    def __init__(self, module, interpreters: list) -> None:
        self.module = module
        self.interpreters = interpreters

    def stop(self, index: int, timeout: float) -> int:
        return self.interpreters[index].stop(timeout)

    def retire(self, index: int, timeout: float) -> None:
        self.interpreters[index].retire(timeout)

    def teardown(self, index: int) -> tuple[int, int, float]:
        return self.interpreters[index].teardown()

    def shutdown(self, timeout: float) -> int:
        """Stop every interpreter, in parallel; how many threads could not be joined."""
        def stop(interpreter) -> None:
            try:
                interpreter.stop(timeout)
            except self.module.NativeError:
                pass                          # lost or stuck: its record says so

        threads = [threading.Thread(target=stop, args=(i,)) for i in self.interpreters]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stuck = (self.module.TEARDOWN_LOST, self.module.TEARDOWN_FINALIZING)
        return sum(1 for i in self.interpreters if i.teardown()[0] in stuck)


class CopiesRuntime(RuntimeTeardown, InterpreterRequests):
    """``n`` interpreters in this process, each running from its own renamed libpython copy.

    ``copy_extensions``: which extensions outside the standard library load from per-interpreter
    relinked copies: None (default) every one; a list of paths only those (e.g. an ``interpkit
    patch`` output's manifest); ``[]`` none, so the others load as built (what the copies
    backend does to an unpatched extension). ``prepare``: extension files to relink ahead of
    time. ``timeout`` bounds every request; ``sys_path`` defaults to the host's. ``teardown``
    and what ``stop``/``close`` return are the namespaces runtime's (``protocol.RuntimeTeardown``).
    """

    backend = "copies"
    POOL_PREFIX = "interpkit-copies"

    def __init__(self, n: int, *, libpython: str | os.PathLike | None = None, timeout: float | None = None,
                 sys_path: Iterable[str] | None = None, start_timeout: float = 300.0,
                 copy_extensions: Iterable[str | os.PathLike] | None = None,
                 prepare: Iterable[str | os.PathLike] = (), cache: str | os.PathLike | None = None,
                 manifest: str | os.PathLike | None = None, weaken_unique: bool = True,
                 threads_per_interpreter: int | None = None, teardown: str = "finalize") -> None:
        from interpkit.native import _copies

        path = checked_start(n, teardown, libpython)
        self.n = n
        self.timeout = timeout
        # Accepted for the namespaces runtime's signature, not applied: the libraries that own
        # intra-op pools (libgomp, MKL, libtorch_cpu) have no Py* symbols, so every copy shares
        # them and their pools are process-wide here.
        self.threads_per_interpreter = threads_per_interpreter
        self.libpython = path
        self._module = _copies
        self.teardown_policy = teardown
        self._teardown: dict = {}
        self._native: _Interpreters | None = None
        soname = copy_soname_stem(sysconfig.get_config_var("INSTSONAME") or path.name)
        self.maker = TemplateMaker(soname, Path(cache) if cache else None, weaken_unique=weaken_unique)
        if manifest is not None:
            # An `interpkit patch --backend copies` output: its extensions load from copies
            # (relinked ahead of time, here), anything else as built.
            listed = manifest_extensions(Path(manifest))
            copy_extensions = [*(copy_extensions or ()), *listed]
            prepare = [*prepare, *listed]
        _sweep_stale_workdirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{os.getpid()}-"))
        # Removed on close; also when the runtime is dropped unclosed or the process exits.
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.workdir), True)
        self._interpreters: list[Any] = []
        self._service: _TemplateService | None = None
        try:
            template = self.maker.libpython(path)
            self.copy_ids = _take_copy_ids(n)
            self.libpython_copies = [self._libpython_instance(template.path, k) for k in range(n)]
            self._service = _TemplateService(self.maker, n)
            for source in prepare:      # ahead of time; a refusal is that module's outcome
                self._service._answer(str(Path(source).resolve()))
            entries = [str(p) for p in (sys.path if sys_path is None else sys_path)]
            only = None if copy_extensions is None else [str(Path(p).resolve()) for p in copy_extensions]
            for k in range(n):
                bootstrap = _BOOTSTRAP.format(loader=str(_LOADER), copy_id=self.copy_ids[k],
                                              directory=str(self.workdir / str(k)),
                                              request_fd=self._service.pipes[k][0],
                                              answer_fd=self._service.pipes[k][1],
                                              stdlib=str(_stdlib_extensions()), only=only, sys_path=entries)
                try:
                    self._interpreters.append(_copies.Interpreter(str(self.libpython_copies[k]), sys.executable,
                                                                  bootstrap, k))
                except _copies.NativeError as exc:
                    raise RuntimeStartError(f"cannot load interpreter {k} ({exc.args[2]})") from None
            for interpreter in self._interpreters:   # they initialize in parallel
                try:
                    interpreter.wait_ready(start_timeout)
                except _copies.NativeError as exc:
                    raise RuntimeStartError(exc.args[2] + _keys_hint()) from None
        except BaseException:
            _Interpreters(_copies, self._interpreters).shutdown(start_timeout)
            self._release(None)
            raise
        self._native = _Interpreters(_copies, self._interpreters)
        self._start_serving()
        _runtimes.add(self)

    def _abandon(self) -> None:
        self._native = None
        for interpreter in self._interpreters:
            interpreter.abandon()
        self._service = None
        self._pool = self._broadcast = None

    def _libpython_instance(self, template: Path, index: int) -> Path:
        folder = self.workdir / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        copy_id = self.copy_ids[index]
        data = template.read_bytes().replace(PLACEHOLDER.encode() + b"\0", b".ik%04d\0" % copy_id)
        target = folder / (template.name[: -len(PLACEHOLDER)] + ".ik%04d" % copy_id)
        target.write_bytes(data)
        os.chmod(target, 0o755)
        return target

    # ------------------------------------------------------------------ requests

    def _request(self, index: int, *message: Any, timeout: float | None = None) -> Any:
        if self._native is None:
            raise InterpreterClosed("cannot use runtime (closed)")
        if not 0 <= index < self.n:
            raise IndexError(f"no interpreter {index} (runtime has {self.n})")
        limit = self.timeout if timeout is None else timeout
        try:
            answer = self._interpreters[index].submit(pickle.dumps(message), limit or 0.0)
        except self._module.NativeError as exc:
            self._raise(exc, index)
        except ValueError:
            raise InterpreterClosed(f"interpreter {index} is closed") from None
        ok, value = pickle.loads(answer)
        if not ok:
            raise RemoteError(index, *value)
        return value

    # ------------------------------------------------------------------ introspection

    def alive(self, index: int) -> bool:
        return self._native is not None and self._interpreters[index].alive()

    def copies(self, index: int) -> dict[str, str]:
        """Extension file -> the copy interpreter ``index`` loaded it from."""
        return self.call(index, "_interpkit_copies_loader:loaded")

    def refused(self) -> dict[str, str]:
        """Extension files that could not be copied, with the one-line reason."""
        return dict(self._service.refused) if self._service else {}

    def native_thread(self, index: int) -> int:
        return self._interpreters[index].native_thread()

    def namespace_libs(self, index: int) -> list[LoadedObject]:
        """The objects that belong to interpreter ``index`` alone: its libpython copy and its
        extension copies, as mapped now (path, lowest mapping address, namespace 0).

        Everything else mapped in the process (libc, dependencies without Py* symbols) is
        shared by all interpreters.
        """
        prefix = str(self.workdir / str(index)) + os.sep
        seen: dict[str, int] = {}
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith(prefix):
                start = int(parts[0].split("-")[0], 16) - int(parts[2], 16)
                seen[parts[5]] = min(seen.get(parts[5], start), start)
        return [LoadedObject(path, base, 0) for path, base in seen.items()]

    # ------------------------------------------------------------------ teardown

    # ------------------------------------------------------------------ teardown (protocol.RuntimeTeardown)

    def _release(self, native) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
        # Mapped copies stay valid after unlink; the folder goes with the runtime.
        shutil.rmtree(self.workdir, ignore_errors=True)
        if getattr(self, "_finalizer", None) is not None:
            self._finalizer.detach()

    def __repr__(self) -> str:
        state = "closed" if getattr(self, "_native", None) is None else f"{len(self.live_indices())} live"
        return f"<CopiesRuntime n={self.n} {state} libpython={self.libpython.name}>"
