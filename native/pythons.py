"""Find other CPython interpreters (3.12, 3.13) that the subinterpreters backend can drive.

The tool itself runs on 3.11 (torch), so own-GIL subinterpreters live in a child process of
another Python. Candidates come from, in order: ``INTERPKIT_PYTHONS`` (``os.pathsep``-separated
paths or command names), ``[tool.interpkit] interpreters`` (passed in by the caller, which
reads the configuration), the CPython builds under ``pyenv root`` (the command is run; no
path is assumed), and ``python3.13`` / ``python3.12`` on ``PATH``. Each candidate is *run*
once to learn what it really is; nothing is trusted from its file name.
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
PATH_MINORS: tuple[int, ...] = (13, 12, 11)
# The oldest CPython with own-GIL subinterpreters; older pyenv builds are not candidates.
OLDEST_SUBINTERPRETERS = (3, 12)
_CPYTHON_BUILD = re.compile(r"(\d+)\.(\d+)\.(\d+)")   # pyenv's names for plain CPython builds
_PROBE_TIMEOUT_S = 20

# Runs inside the candidate: its identity and which subinterpreter API it offers.
_PROBE_SOURCE = r"""
import json, sys, sysconfig
api = None
for name in ("_interpreters", "_xxsubinterpreters"):
    try:
        __import__(name)
    except ImportError:
        continue
    api = name
    break
print(json.dumps({
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
    subinterpreter_api: str | None   # "_interpreters" (3.13) or "_xxsubinterpreters" (3.12)
    shared_libpython: bool
    free_threaded: bool = False
    soabi: str = ""                  # e.g. "cpython-313-x86_64-linux-gnu"

    @property
    def short_version(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def unsupported_reason(self) -> str | None:
        """None when own-GIL subinterpreters can be driven from Python code, else why not."""
        if self.implementation != "cpython":
            return f"{self.executable} is {self.implementation}, not CPython"
        if self.version[:2] < (3, 12):
            return f"{self.executable} is Python {self.short_version} (own-GIL subinterpreters need 3.12+)"
        if self.subinterpreter_api is None:
            return f"{self.executable} has neither _interpreters nor _xxsubinterpreters"
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
        executable=Path(data["executable"]),
        version=tuple(data["version"]),
        implementation=data["implementation"],
        subinterpreter_api=data["api"],
        shared_libpython=data["shared"],
        free_threaded=data["free_threaded"],
        soabi=data["soabi"] or "",
    )


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
