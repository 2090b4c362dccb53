"""The namespaces runtime's C extension for another CPython (3.12 … 3.15), built on demand.

The binding shares struct layouts (PyConfig) with the libpython each namespace loads, so it is
compiled against *that* Python's headers: ``runtime_extension(info)`` compiles
``namespaces/_interpkit.c`` + ``namespaces/runtime.c`` + the worker core (``core/``, as
setup.py does for the running Python) with the target's sysconfig (include folder, and the folder
above it for Debian's multiarch ``pyconfig.h``, docs/facts.md fact 12) into
``~/.cache/interpkit-runtime/<soabi>/<hash>/`` (or ``$INTERPKIT_RUNTIME_CACHE``), where <hash>
covers the sources, the compiler command and the target's configuration. The build lands in a
temporary sibling and is moved there with one rename, so a reader sees all of it or nothing.

A child of that Python loads it with ``activate(path)`` before ``interpkit.native.runtime``
is imported (the checkout's own ``_interpkit`` is the running Python's build).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from interpkit.core.errors import RuntimeUnavailable
from interpkit.native.pythons import PythonInfo

NATIVE = Path(__file__).resolve().parent.parent
SOURCES = (NATIVE / "namespaces" / "_interpkit.c", NATIVE / "namespaces" / "runtime.c",
           NATIVE / "core" / "worker.c", NATIVE / "core" / "binding.c")
HEADERS = (NATIVE / "namespaces" / "include" / "interpkit.h", NATIVE / "core" / "worker.h",
           NATIVE / "core" / "binding.h", NATIVE / "core" / "status.h")
CACHE_ROOT = Path(os.environ.get("INTERPKIT_RUNTIME_CACHE", Path.home() / ".cache" / "interpkit-runtime"))
MODULE = "interpkit.native._interpkit"
_BUILD_TIMEOUT_S = 300
# The same flags as setup.py's build of the running Python's extension.
_CFLAGS = ("-shared", "-fPIC", "-O2", "-std=gnu11", "-fvisibility=hidden", "-D_GNU_SOURCE", "-Wall", "-Wextra",
           "-Wno-unused-parameter", "-Wno-missing-field-initializers", "-Wno-cast-function-type")
_CONFIG_PROBE = r"""
import json, os, sysconfig
include = sysconfig.get_paths()["include"]
above, name = os.path.split(include)
multiarch = sysconfig.get_config_var("MULTIARCH") or "-"
print(json.dumps({"include": include, "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
                  "include_above": above if os.path.isfile(os.path.join(above, multiarch, name, "pyconfig.h")) else None}))
"""


def _target_config(info: PythonInfo) -> dict:
    try:
        done = subprocess.run([str(info.executable), "-I", "-c", _CONFIG_PROBE], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeUnavailable(f"cannot ask {info.executable} for its build settings ({exc})") from None
    if done.returncode != 0:
        raise RuntimeUnavailable(f"cannot ask {info.executable} for its build settings ({done.stderr.strip()[-200:]})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _command(config: dict, output: Path) -> list[str]:
    includes = ["-I", str(NATIVE / "namespaces" / "include"), "-I", str(NATIVE / "core"), "-I", config["include"]]
    if config.get("include_above"):
        includes += ["-I", config["include_above"]]
    return [os.environ.get("CC", "gcc"), *_CFLAGS, *includes, *map(str, SOURCES), "-o", str(output),
            "-ldl", "-lpthread"]


def runtime_extension(info: PythonInfo) -> Path:
    """The runtime extension compiled for ``info`` (cached by content); RuntimeUnavailable with
    the compiler's message when it cannot be built."""
    config = _target_config(info)
    digest = hashlib.sha256()
    for path in (*SOURCES, *HEADERS):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(json.dumps([config, _command(config, Path("x"))], sort_keys=True).encode())
    final = CACHE_ROOT / info.soabi / digest.hexdigest()[:16]
    built = final / f"_interpkit{config['ext_suffix']}"
    if built.is_file():
        return built
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        try:
            done = subprocess.run(_command(config, work / built.name), capture_output=True, text=True,
                                  timeout=_BUILD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeUnavailable(f"cannot build the namespaces runtime for Python {info.short_version} ({exc})") from None
        if done.returncode != 0:
            raise RuntimeUnavailable(f"cannot build the namespaces runtime for Python {info.short_version}: "
                                     f"{done.stderr.strip()[-600:]}")
        try:
            os.rename(work, final)
        except OSError:
            if not built.is_file():  # another process won the race only if its build is complete
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return built


def activate(path: str | os.PathLike) -> None:
    """Load the runtime extension at ``path`` as ``interpkit.native._interpkit`` (in a child of
    the Python it was built for), before anything imports the runtime."""
    import importlib.machinery
    import importlib.util

    if MODULE in sys.modules:
        return
    loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
    spec = importlib.util.spec_from_file_location(MODULE, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)


@dataclass(frozen=True)
class NamespacesRuntimeFor:
    """The namespaces runtime of another Python: that interpreter, the extension built for it
    and the libpython each of its namespaces loads. A child started with ``command()`` and
    ``job_fields()`` in its job runs the runtime there (native/sandbox/probe.py, its job's ``runtime_extension``)."""

    python: PythonInfo
    extension: Path

    def command(self) -> list[str]:
        return [str(self.python.executable), "-X", "faulthandler"]

    def job_fields(self) -> dict[str, str]:
        """What the child's job line adds: the extension to activate, the libpython to load."""
        return {"runtime_extension": str(self.extension), "libpython": self.python.libpython}


def namespaces_runtime_for(info: PythonInfo) -> NamespacesRuntimeFor:
    """The runtime for ``info`` (built and cached on first use); RuntimeUnavailable saying why
    it cannot run there (no shared libpython, free-threaded, too old, compiler error)."""
    reason = info.namespaces_unavailable()
    if reason:
        raise RuntimeUnavailable(f"cannot run namespaces on Python {info.full_version} ({reason})")
    return NamespacesRuntimeFor(info, runtime_extension(info))
