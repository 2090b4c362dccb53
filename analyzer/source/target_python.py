"""The Python a scanned tree is judged for: its import search path, extension suffixes and stdlib.

A cp314 site-packages scanned by interpkit running on 3.11 must not resolve `import math` into
3.11's lib-dynload, nor `import pytest` into 3.11's site-packages: the tree runs on 3.14, whose
standard library and installed packages are another set of files. The target comes from
`scan --python PATH|X.Y`, else from the tree itself: the CPython version tags of its extension
file names when they all agree (`*.cpython-314-x86_64-linux-gnu.so`), else a
`lib/pythonX.Y/site-packages` folder above a scanned path. The interpreter of an inferred
version is the layout's own `<prefix>/bin/pythonX.Y` when it runs (a venv's sees its
site-packages), else the first of that version interpkit.native.pythons finds. No target (or
the running Python's own version): the running Python, as before.

The target is asked once, in a child of its own (`-I`: its installation's search path, not
ours), for its folders and names; the answer is kept per executable for the process. Nothing is
asked per module: resolution then runs here with FileFinders built for the target's suffixes.
When the version is known but no such interpreter is found, the tree's own folders are the
whole search path and the stdlib names are the running Python's (the closest list at hand):
still nothing of the scanning Python's files is reached.
"""
from __future__ import annotations

import functools
import importlib.machinery
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from interpkit.core.errors import InputError

_PROBE_TIMEOUT_S = 30
# `name.cpython-314-x86_64-linux-gnu.so` (314t: free-threaded): the CPython a file is built for
_ABI_TAG = re.compile(r"\.cpython-(\d)(\d+)(t?)-[^.]*\.so$")
_LAYOUT = re.compile(r"python(\d)\.(\d+)t?")

# Runs in the target (python -I -c): what import resolution needs of it, as one JSON line.
_PROBE_SOURCE = r"""
import importlib.machinery, json, os, site, sys, sysconfig
paths = sysconfig.get_paths()
real = lambda p: os.path.realpath(p)
search = [real(p) for p in sys.path if p and os.path.isabs(p)]
try:
    sites = list(site.getsitepackages())
except AttributeError:
    sites = []
sites += [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
print(json.dumps({
    "version": list(sys.version_info[:2]),
    "search_path": search,
    "stdlib": sorted({real(paths[k]) for k in ("stdlib", "platstdlib") if k in paths}),
    "dynload": sorted({p for p in search if os.path.basename(p) == "lib-dynload"}),
    "site_packages": sorted({real(p) for p in sites}),
    "extension_suffixes": list(importlib.machinery.EXTENSION_SUFFIXES),
    "stdlib_module_names": sorted(sys.stdlib_module_names),
    "builtin_module_names": sorted(sys.builtin_module_names),
}))
"""


@dataclass(frozen=True)
class TargetPython:
    """What the scanned tree's imports resolve against (another CPython than the running one)."""

    version: tuple[int, int]
    executable: str | None            # None: that version was inferred but no such Python was found
    found_by: str                     # "--python", "extension tags" or "layout"
    search_path: tuple[str, ...] = ()  # its sys.path (real paths): stdlib, lib-dynload, site-packages
    stdlib: tuple[str, ...] = ()      # its standard library folders (lib-dynload sits inside or beside)
    dynload: tuple[str, ...] = ()
    site_packages: tuple[str, ...] = ()
    extension_suffixes: tuple[str, ...] = ()
    stdlib_module_names: frozenset[str] = field(default=frozenset(), repr=False)
    builtin_module_names: frozenset[str] = field(default=frozenset(), repr=False)
    reason: str = ""                  # why no executable (executable None)

    @property
    def short_version(self) -> str:
        return "%d.%d" % self.version

    def is_stdlib(self, top: str, path: str | None) -> bool:
        """Part of this Python's standard library: by name, or by living in its stdlib folders
        (outside its site-packages), as test modules such as `_testbuffer` do."""
        if top in self.stdlib_module_names or top in self.builtin_module_names:
            return True
        if path is None or not self.stdlib:
            return False
        real = os.path.realpath(path)
        inside = lambda folders: any(real.startswith(f.rstrip(os.sep) + os.sep) for f in folders)
        return inside((*self.stdlib, *self.dynload)) and not inside(self.site_packages)

    def to_json(self) -> dict:
        out = {"version": self.short_version, "executable": self.executable, "found_by": self.found_by,
               "search_path": list(self.search_path)}
        if self.reason:
            out["reason"] = self.reason
        return out


def suffixes_for(version: tuple[int, int]) -> tuple[str, ...]:
    """EXTENSION_SUFFIXES of a Linux CPython `version` on this machine's architecture, for a
    target that cannot be asked: this Python's own, its version tag swapped."""
    ours = "%d%d" % sys.version_info[:2]
    theirs = "%d%d" % version
    return tuple(s.replace(f"cpython-{ours}", f"cpython-{theirs}") for s in importlib.machinery.EXTENSION_SUFFIXES)


@functools.lru_cache(maxsize=16)
def ask(executable: str, found_by: str) -> TargetPython:
    """The target's answer to _PROBE_SOURCE (one child per executable and process).
    Raises InputError when it does not answer."""
    try:
        done = subprocess.run([executable, "-I", "-c", _PROBE_SOURCE], capture_output=True, text=True,
                              timeout=_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"cannot use Python {executable} ({type(exc).__name__}: {exc})") from None
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        first = (done.stderr.strip().splitlines() or ["no answer"])[0]
        raise InputError(f"cannot use Python {executable} (exited {done.returncode}: {first})") from None
    return TargetPython(tuple(data["version"]), executable, found_by, tuple(data["search_path"]),
                        tuple(data["stdlib"]), tuple(data["dynload"]), tuple(data["site_packages"]),
                        tuple(data["extension_suffixes"]), frozenset(data["stdlib_module_names"]),
                        frozenset(data["builtin_module_names"]))


def resolve_python(wanted: str, configured: tuple[str, ...] = ()) -> str:
    """`--python PATH|X.Y` -> an interpreter path (interpkit.native.pythons finds X.Y);
    InputError (exit 2, one line) when there is none."""
    from interpkit.native import pythons

    if os.sep in wanted:
        info = pythons.inspect_python(wanted)
        if isinstance(info, str):
            raise InputError(f"cannot use --python {info}")
        return wanted
    if not re.fullmatch(r"\d+\.\d+", wanted):
        raise InputError(f"cannot use --python {wanted} (give a path or a version such as 3.14)")
    info = pythons.python_for_version(wanted, configured)
    if info is None:
        raise InputError(f"cannot find Python {wanted} for --python (set {pythons.ENV_VAR} or "
                         "[tool.interpkit] interpreters)")
    return str(info.executable)


def layout_interpreter(scanned: list[Path], version: tuple[int, int]) -> str | None:
    """`<prefix>/bin/pythonX.Y` beside a scanned `<prefix>/lib/pythonX.Y/site-packages` (a venv's
    or an installation's own interpreter, whose search path is that site-packages), if it runs."""
    from interpkit.native import pythons

    for path in scanned:
        here = Path(os.path.abspath(path))
        for folder in (here, *here.parents):
            if folder.name in ("site-packages", "dist-packages") and folder.parent.name == "python%d.%d" % version:
                candidate = folder.parent.parent.parent / "bin" / ("python%d.%d" % version)
                info = pythons.inspect_python(str(candidate)) if candidate.is_file() else None
                if info is not None and not isinstance(info, str) and tuple(info.version[:2]) == version:
                    return str(candidate)
    return None


def inferred_version(extensions: list[Path], scanned: list[Path]) -> tuple[tuple[int, int] | None, str]:
    """(version, how it was found) the tree is built for: its extensions' CPython tags when they
    all agree, else a `lib/pythonX.Y/site-packages` above a scanned path; (None, "") when neither."""
    tags = set()
    for path in extensions:
        match = _ABI_TAG.search(path.name)
        if match:
            tags.add((int(match.group(1)), int(match.group(2))))
    if len(tags) == 1:
        return tags.pop(), "extension tags"
    if tags:
        return None, ""   # a tree mixing builds: no one Python fits it, judge as before
    for path in scanned:
        here = Path(os.path.abspath(path))
        for folder in (here, *here.parents):
            if folder.name in ("site-packages", "dist-packages"):
                match = _LAYOUT.fullmatch(folder.parent.name)
                if match:
                    return (int(match.group(1)), int(match.group(2))), "layout"
    return None, ""


def target_for(wanted: str | None, extensions: list[Path], scanned: list[Path],
               configured: tuple[str, ...] = ()) -> TargetPython | None:
    """The Python a scan judges for; None: the running one (also when the tree is built for it)."""
    if wanted:
        return ask(resolve_python(wanted, configured), "--python")
    version, found_by = inferred_version(extensions, scanned)
    if version is None or version == tuple(sys.version_info[:2]):
        return None
    from interpkit.native import pythons

    # the tree's own interpreter first (a venv's sees its site-packages), else any of that version
    own = layout_interpreter(scanned, version)
    info = pythons.python_for_version("%d.%d" % version, configured) if own is None else None
    if own is not None or info is not None:
        try:
            return ask(own or str(info.executable), found_by)
        except InputError as exc:
            reason = str(exc)
    else:
        reason = f"no CPython {version[0]}.{version[1]} was found (set {pythons.ENV_VAR} or [tool.interpkit] interpreters)"
    return TargetPython(version, None, found_by, extension_suffixes=suffixes_for(version),
                        stdlib_module_names=frozenset(sys.stdlib_module_names),
                        builtin_module_names=frozenset(sys.builtin_module_names), reason=reason)
