"""Run *inside* each interpreter of the copies runtime (stdlib only): load extensions from
this interpreter's own relinked copies.

Why: every interpreter of the copies runtime executes from its own renamed libpython copy in
the base link-map namespace. An extension loaded as built would bind its ``Py*`` references
to the host's libpython (the one in the global scope), and one file would be one image shared
by every interpreter (glibc keys loaded objects by device and inode). So each extension is
loaded from a per-interpreter *instance*: a copy of the host-made *template* (DT_NEEDED on
``libpythonX.Y...ik____``, GNU_UNIQUE made weak, SONAME renamed, see native/copies/runtime.py) whose
placeholder ``ik____`` is replaced by this interpreter's number. Loading it with
``RTLD_DEEPBIND`` puts its own dependency list (its libpython copy first) before the global
scope, so ``Py*`` resolves to this interpreter's copy even though the host's libpython is
global.

The one choke point is ``_imp.create_dynamic``: ``ExtensionFileLoader`` (and so every finder,
``spec_from_file_location`` included) calls it through the module attribute at call time.
Templates are made by the host (they need LIEF); this side asks for one over a pipe and only
does the byte copy, which is cheap and needs nothing but the standard library.
"""
from __future__ import annotations

import _imp
import os
import sys

TOKEN = b".ik____\0"          # placeholder in a template's .dynstr (see native/copies/runtime.py)

RTLD_DEEPBIND = getattr(os, "RTLD_DEEPBIND", 0x8)
_state: dict = {}


def _instance_token(index: int) -> bytes:
    return b".ik%04d\0" % index


def make_instance(template: str, companions: list[str], directory: str, index: int) -> str:
    """Copy `template` (and the dependency templates it names) into `directory` for interpreter
    `index`: every placeholder becomes this interpreter's number. Written under a temporary
    name and renamed, so a reader never sees half a file."""
    os.makedirs(directory, exist_ok=True)
    target = None
    for path in [template, *companions]:
        name = os.path.basename(path)
        if name.endswith(".ik____"):
            name = name[: -len(".ik____")] + ".ik%04d" % index
        out = os.path.join(directory, name)
        if not os.path.exists(out):
            with open(path, "rb") as fh:
                data = fh.read().replace(TOKEN, _instance_token(index))
            tmp = f"{out}.{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o755)
            os.replace(tmp, out)
        if target is None:
            target = out
    return target


def _ask_host(source: str) -> tuple[str, list[str]]:
    """The template for `source`, made (or found in the cache) by the host."""
    request_fd, answer_fd = _state["pipes"]
    os.write(request_fd, (source + "\n").encode())
    chunks = b""
    while not chunks.endswith(b"\n"):
        chunk = os.read(answer_fd, 65536)
        if not chunk:
            raise ImportError("cannot load a copy (the runtime's host side has gone)")
        chunks += chunk
    answer = chunks.decode().rstrip("\n")
    if answer.startswith("!"):
        raise ImportError(answer[1:], path=source)
    template, *companions = answer.split("\0")
    return template, companions


def copy_for(source: str) -> str:
    """This interpreter's instance of the extension file `source` (made on first use)."""
    source = os.path.realpath(source)
    known = _state["copies"].get(source)
    if known is not None:
        return known
    template, companions = _ask_host(source)
    digest = os.path.basename(os.path.dirname(template))
    directory = os.path.join(_state["directory"], digest)
    copy = make_instance(template, companions, directory, _state["copy_id"])
    _state["copies"][source] = copy
    return copy


class _Spec:
    """The fields of a ModuleSpec that create_dynamic reads, with origin on the copy."""

    def __init__(self, spec, origin):
        self.name = spec.name
        self.origin = origin


def _create_dynamic(spec, file=None, /):
    original = _state["create_dynamic"]
    source = getattr(spec, "origin", None)
    if not source or not os.path.isfile(source) or not _wanted(os.path.realpath(source)):
        return original(spec) if file is None else original(spec, file)
    copy = copy_for(source)
    try:
        module = original(_Spec(spec, copy)) if file is None else original(_Spec(spec, copy), file)
    except ImportError as exc:
        if "static TLS" not in str(exc):
            raise
        # Each copy of an initial-exec TLS extension takes its block from the one static TLS
        # reserve of the process; this interpreter's copy found it used up by the others.
        raise ImportError(f"{exc} (every interpreter's copy of {os.path.basename(source)} takes initial-exec "
                          "TLS from the process's static TLS reserve, and the copies loaded so far used it up; "
                          "set GLIBC_TUNABLES=glibc.rtld.optional_static_tls=BYTES before the process starts "
                          "for more)", name=spec.name, path=source) from None
    try:
        module.__file__ = source        # data files next to the extension stay reachable
        module.__interpkit_copy__ = copy
    except (AttributeError, TypeError):
        pass                            # a module type without a __dict__
    return module


def _wanted(source: str) -> bool:
    """Whether `source` is loaded from a copy: always for the runtime's own standard library
    (nothing works without it); for other files as the runtime's policy says."""
    if source.startswith(_state["stdlib"]):
        return True
    only = _state["only"]
    return only is None or source in only


def install(copy_id: int, directory: str, pipes: tuple[int, int], stdlib: str,
            only: list[str] | None = None) -> None:
    """Install once, before anything imports an extension (the bootstrap's first lines).

    `copy_id` is this interpreter's number in the process (unique for the process's life; it
    names its libpython copy). `only`: real paths of the extensions outside `stdlib` to load from copies (None: all of
    them; []: none, every other extension loads as built)."""
    if _state:
        return
    _state.update(copy_id=copy_id, directory=directory, pipes=pipes, copies={}, stdlib=stdlib.rstrip("/") + "/",
                  only=None if only is None else {os.path.realpath(p) for p in only},
                  create_dynamic=_imp.create_dynamic)
    # The import system's dlopen flags for extensions in this interpreter.
    flags = os.RTLD_NOW | os.RTLD_LOCAL | RTLD_DEEPBIND
    original = sys.setdlopenflags
    original(flags)

    # A package asking for RTLD_GLOBAL (torch does) would put this interpreter's copies, and
    # through them its libpython copy, in the global scope, where other interpreters' loads
    # could bind to them; and dropping RTLD_DEEPBIND would bind Py* to the host.
    def setdlopenflags(requested: int, /) -> None:
        _state.setdefault("requested_flags", []).append(requested)
        original((requested & ~os.RTLD_GLOBAL) | os.RTLD_LOCAL | RTLD_DEEPBIND)

    setdlopenflags.__wrapped__ = original
    sys.setdlopenflags = setdlopenflags
    _imp.create_dynamic = _create_dynamic


def loaded() -> dict[str, str]:
    """source file -> this interpreter's copy, for every extension loaded through a copy."""
    return dict(_state.get("copies", {}))
