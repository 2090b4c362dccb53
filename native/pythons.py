"""Find other CPython interpreters (3.12 to 3.15) that the subinterpreters backend can drive.

The tool itself runs on 3.11 (torch), so own-GIL subinterpreters live in a child process of
another Python. Candidates come from, in order: ``INTERPKIT_PYTHONS`` (``os.pathsep``-separated
paths or command names), ``[tool.interpkit] interpreters`` (passed in by the caller, which
reads the configuration), the CPython builds under ``pyenv root`` (the command is run; no
path is assumed), and ``python3.15`` … ``python3.12`` on ``PATH``. Each candidate is *run*
once to learn what it really is; nothing is trusted from its file name. A candidate may be a
wrapper script (e.g. a Python started through another loader, docs/facts.md fact 12): when the
``sys.executable`` it reports does not start by itself, the candidate's own path is kept.

``python_for_abi`` picks, for an extension's ABI tag (``cpython-314-x86_64-linux-gnu``,
``abi3`` with its floor), a Python that can load it, or says which Python is missing.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from interpkit.core.errors import RuntimeUnavailable

ENV_VAR = "INTERPKIT_PYTHONS"
# Commands looked up on PATH last, newest first: pyenv's shims on PATH can name a version that
# is not selected (the shim then fails when run), so pyenv's own builds are tried before them.
PATH_MINORS: tuple[int, ...] = (15, 14, 13, 12, 11)
# The oldest CPython with own-GIL subinterpreters; older pyenv builds are not candidates.
OLDEST_SUBINTERPRETERS = (3, 12)
_CPYTHON_BUILD = re.compile(r"(\d+)\.(\d+)\.(\d+)")   # pyenv's names for plain CPython builds
_PROBE_TIMEOUT_S = 20

# Runs inside the candidate: its identity and which subinterpreter API it offers.
_PROBE_SOURCE = r"""
import json, sys, sysconfig
api = None
# 3.14+: PEP 734's public API; 3.13: _interpreters; 3.12: _xxsubinterpreters.
for name in ("concurrent.interpreters", "_interpreters", "_xxsubinterpreters"):
    try:
        __import__(name)
    except ImportError:
        continue
    api = name
    break
# The libpython a namespace can load: the one mapped into this process, else the one the
# build installed beside a statically linked executable (Debian: LIBDIR/INSTSONAME, found
# under this interpreter's own prefix when the tree was unpacked elsewhere).
import os
libpython = None
version = "libpython%d.%d" % sys.version_info[:2]
try:
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(None, 5)[-1].strip() if len(line.split(None, 5)) == 6 else ""
            if os.path.basename(path).startswith(version) and ".so" in path:
                libpython = path
                break
except OSError:
    pass
name, libdir = sysconfig.get_config_var("INSTSONAME"), sysconfig.get_config_var("LIBDIR") or ""
folders = [libdir]
if libdir.startswith("/usr/") and sys.base_prefix != "/usr":
    folders.insert(0, sys.base_prefix + libdir[len("/usr"):])
for folder in folders if libpython is None and name and ".so" in name else ():
    if os.path.isfile(os.path.join(folder, name)):
        libpython = os.path.join(folder, name)
        break
print(json.dumps({
    "libpython": libpython,
    "executable": sys.executable,
    "version": list(sys.version_info[:3]),
    "implementation": sys.implementation.name,
    "api": api,
    "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
    "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "soabi": sysconfig.get_config_var("SOABI"),
}))
"""


@dataclass(frozen=True)
class PythonInfo:
    """One interpreter that was run and answered."""

    executable: Path
    version: tuple[int, int, int]
    implementation: str
    subinterpreter_api: str | None   # "concurrent.interpreters" (3.14+), "_interpreters" (3.13), "_xxsubinterpreters" (3.12)
    shared_libpython: bool
    free_threaded: bool = False
    soabi: str = ""                  # e.g. "cpython-313-x86_64-linux-gnu"
    libpython: str = ""              # the shared libpython a namespace loads ("" when there is none)

    @property
    def short_version(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def full_version(self) -> str:
        return ".".join(map(str, self.version))

    def unsupported_reason(self) -> str | None:
        """None when own-GIL subinterpreters can be driven from Python code, else why not."""
        if self.implementation != "cpython":
            return f"{self.executable} is {self.implementation}, not CPython"
        if self.version[:2] < (3, 12):
            return f"{self.executable} is Python {self.short_version} (own-GIL subinterpreters need 3.12+)"
        if self.subinterpreter_api is None:
            return f"{self.executable} has neither concurrent.interpreters, _interpreters nor _xxsubinterpreters"
        return None


    def namespaces_unavailable(self) -> str | None:
        """None when the namespaces runtime can run on this Python, else why not."""
        if self.implementation != "cpython" or self.version[:2] < (3, 11):
            return f"{self.executable} is {self.implementation} {self.short_version} (namespaces need CPython 3.11+)"
        if self.free_threaded:
            return f"{self.executable} is free-threaded (the namespaces runtime is built for the GIL's ABI)"
        if not self.libpython:
            return (f"{self.executable} has no shared libpython{self.short_version} (each namespace loads one; "
                    "build it with --enable-shared)")
        return None


def _split_env(value: str | None) -> list[str]:
    return [part for part in (value or "").split(os.pathsep) if part.strip()]


@functools.cache
def pyenv_root() -> Path | None:
    """What `pyenv root` prints, when pyenv is on PATH and answers; else None."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return None
    try:
        done = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return Path(lines[-1]) if done.returncode == 0 and lines else None


def pyenv_pythons(oldest: tuple[int, int] = OLDEST_SUBINTERPRETERS) -> list[str]:
    """pythonX.Y of every CPython build under `pyenv root`/versions at or above `oldest`, newest first."""
    root = pyenv_root()
    versions = root / "versions" if root is not None else None
    if versions is None or not versions.is_dir():
        return []
    found = []
    for folder in versions.iterdir():
        match = _CPYTHON_BUILD.fullmatch(folder.name)
        if match is None:
            continue  # virtualenvs, free-threaded "3.13.0t", other implementations
        version = tuple(int(part) for part in match.groups())
        executable = folder / "bin" / f"python{version[0]}.{version[1]}"
        if version[:2] >= oldest and executable.is_file():
            found.append((version, str(executable)))
    return [executable for _, executable in sorted(found, reverse=True)]


def candidate_list(configured: tuple[str, ...] | list[str] = (), *,
                   oldest: tuple[int, int] = OLDEST_SUBINTERPRETERS) -> list[str]:
    """Every candidate in search order, duplicates removed."""
    names = [f"python3.{minor}" for minor in PATH_MINORS if (3, minor) >= oldest]
    seen: list[str] = []
    for item in [*_split_env(os.environ.get(ENV_VAR)), *configured, *pyenv_pythons(oldest), *names]:
        if item not in seen:
            seen.append(item)
    return seen


def _resolve(candidate: str) -> tuple[Path | None, str | None]:
    if os.sep in candidate:
        path = Path(candidate).expanduser()
        if not path.exists():
            return None, "does not exist"
        if not os.access(path, os.X_OK):
            return None, "is not executable"
        return path, None
    found = shutil.which(candidate)
    return (Path(found), None) if found else (None, "not on PATH")


@functools.lru_cache(maxsize=64)
def inspect_python(candidate: str) -> PythonInfo | str:
    """Run one candidate; return its PythonInfo, or a reason why it cannot be used."""
    path, reason = _resolve(candidate)
    if path is None:
        return f"{candidate}: {reason}"
    try:
        done = subprocess.run([str(path), "-I", "-c", _PROBE_SOURCE], capture_output=True,
                              text=True, timeout=_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{candidate}: cannot run ({exc.__class__.__name__}: {exc})"
    if done.returncode != 0:
        # The first line names the cause (pyenv shims explain at length after it).
        first = (done.stderr.strip().splitlines() or ["no output"])[0].strip()
        return f"{candidate}: exited {done.returncode} ({first})"
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return f"{candidate}: did not answer the probe"
    return PythonInfo(
        executable=_runnable_executable(Path(data["executable"]), path),
        version=tuple(data["version"]),
        implementation=data["implementation"],
        subinterpreter_api=data["api"],
        shared_libpython=data["shared"],
        free_threaded=data["free_threaded"],
        soabi=data["soabi"] or "",
        libpython=data.get("libpython") or "",
    )


def _runnable_executable(reported: Path, ran: Path) -> Path:
    """The interpreter's own sys.executable when it starts by itself, else the path that ran
    (a wrapper script whose binary needs another loader or environment)."""
    if reported == ran or reported.resolve() == ran.resolve():
        return reported
    try:
        done = subprocess.run([str(reported), "-I", "-c", "pass"], capture_output=True, timeout=_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return ran
    return reported if done.returncode == 0 else ran


def discover_pythons(configured: tuple[str, ...] | list[str] = ()) -> tuple[list[PythonInfo], list[str]]:
    """All usable-looking interpreters (deduplicated by real executable) and the rejections."""
    found: list[PythonInfo] = []
    rejected: list[str] = []
    for candidate in candidate_list(configured):
        info = inspect_python(candidate)
        if isinstance(info, str):
            rejected.append(info)
        elif all(info.executable.resolve() != f.executable.resolve() for f in found):
            found.append(info)
    return found, rejected


def python_for_version(version: str, configured: tuple[str, ...] | list[str] = ()) -> PythonInfo | None:
    """The first candidate that is CPython `version` ("3.12"), subinterpreter support or not
    (fixture builds need any 3.11+ interpreter); None when none is."""
    major, minor = (int(part) for part in version.split(".")[:2])
    for candidate in candidate_list(configured, oldest=(major, minor)):
        info = inspect_python(candidate)
        if not isinstance(info, str) and info.implementation == "cpython" and info.short_version == version:
            return info
    return None


def find_python(wanted: str, configured: tuple[str, ...] | list[str] = ()) -> PythonInfo:
    """The first interpreter matching ``wanted`` ("3.13", "3.12" or a path) that can run
    own-GIL subinterpreters; raises RuntimeUnavailable naming every candidate tried."""
    if os.sep in wanted:
        info = inspect_python(wanted)
        if isinstance(info, str):
            raise RuntimeUnavailable(f"cannot use Python {info}")
        reason = info.unsupported_reason()
        if reason:
            raise RuntimeUnavailable(f"cannot use Python {wanted} ({reason})")
        return info
    found, rejected = discover_pythons(configured)
    notes = list(rejected)
    for info in found:
        if info.short_version != wanted and ".".join(map(str, info.version)) != wanted:
            notes.append(f"{info.executable}: is {'.'.join(map(str, info.version))}")
            continue
        reason = info.unsupported_reason()
        if reason is None:
            return info
        notes.append(reason)
    tried = "; ".join(notes) or "no candidates"
    raise RuntimeUnavailable(
        f"cannot find Python {wanted} with subinterpreter support "
        f"(set {ENV_VAR} or [tool.interpkit] interpreters; tried: {tried})")


_CPYTHON_ABI = re.compile(r"cpython-(\d)(\d+)(t?)-")


def python_for_abi(tag: str | None, *, floor: tuple[int, int] | None = None, preferred: str = "3.13",
                   configured: tuple[str, ...] | list[str] = (), runtime: str = "subinterpreters") -> PythonInfo:
    """A Python with subinterpreter support that can load an extension whose file name carries
    ABI ``tag``: ``cpython-314-x86_64-linux-gnu`` needs exactly 3.14 (``314t`` a free-threaded
    build), ``abi3`` any 3.12+ from its ``floor`` up (``preferred`` when it fits, else the
    oldest that does), no tag ``preferred``. ``runtime`` "namespaces" asks for a shared
    libpython instead of subinterpreter support. Raises RuntimeUnavailable naming the Python
    that is missing and every candidate tried."""
    unusable = PythonInfo.namespaces_unavailable if runtime == "namespaces" else PythonInfo.unsupported_reason
    support = "a shared libpython" if runtime == "namespaces" else "subinterpreter support"
    if tag is None:
        return find_python(preferred, configured)
    match = _CPYTHON_ABI.match(tag)
    if match:
        version, threaded = f"{match.group(1)}.{match.group(2)}", bool(match.group(3))
        found, rejected = discover_pythons(configured)
        for info in found:
            if info.short_version == version and info.free_threaded == threaded and unusable(info) is None:
                return info
        build = "free-threaded CPython" if threaded else "CPython"
        tried = "; ".join(rejected + [f"{i.executable}: is {i.full_version}" + (" free-threaded" if i.free_threaded else "")
                                      for i in found]) or "no candidates"
        raise RuntimeUnavailable(f"needs {build} {version} (built for {tag}); no such Python with {support} "
                                 f"was found (set {ENV_VAR} or [tool.interpkit] interpreters; tried: {tried})")
    if tag != "abi3":
        raise RuntimeUnavailable(f"needs an interpreter for ABI {tag}, which is not CPython's")
    lowest = max(floor or OLDEST_SUBINTERPRETERS, OLDEST_SUBINTERPRETERS)
    found, rejected = discover_pythons(configured)
    fitting = sorted((info for info in found if info.version[:2] >= lowest and not info.free_threaded
                      and unusable(info) is None), key=lambda info: info.version)
    for info in fitting:
        if info.short_version == preferred:
            return info
    if fitting:
        return fitting[0]
    tried = "; ".join(rejected + [f"{i.executable}: is {i.full_version}" for i in found]) or "no candidates"
    raise RuntimeUnavailable(f"needs CPython {lowest[0]}.{lowest[1]} or newer (abi3"
                             + (f" from {floor[0]}.{floor[1]}" if floor else "")
                             + f"); no such Python with {support} was found (set {ENV_VAR}; tried: {tried})")
