"""Per-interpreter copies: each interpreter imports its own renamed copy of a single-phase extension.

Why: CPython keeps one loaded image per extension file and, for a single-phase module
(``PyModule_Create`` in ``PyInit_*``), calls ``PyInit`` once per process; later interpreters
get a copy of the first module's ``__dict__`` while the C statics (counters, caches, static
types, ``static PyObject *``) stay the first interpreter's. That is what legacy
subinterpreters and the ``copies`` backend see. A file at another path is another image to
``dlopen`` (glibc tells objects apart by device and inode) and another key in CPython's
extension cache (``(path, name)``), so a private copy per interpreter runs its own ``PyInit``
with fresh static state. ``STB_GNU_UNIQUE`` symbols would still be shared between the
copies (one unique table per namespace), so each copy is relinked to ``STB_WEAK`` first, and a
``DT_SONAME`` is renamed per copy.

Known problems: isolated (own-GIL) subinterpreters refuse single-phase modules before any
finder runs; copies do not change that. State the module keeps outside its own image
(``PyGILState_*``, a shared library it links) is not copied.

The copies runtime (``interpkit.native.copies.runtime``) makes its own per-interpreter copies, of every
extension, with ``interpkit.native.copies.templates`` (a lower layer: native must not import shims);
the copies made here serve legacy subinterpreters and ``interpkit patch``'s re-verification.

The import hook itself (``PrivateCopyFinder``, ``install``) uses the standard library only and
runs in every interpreter; making a copy relinks it, which needs interpkit's ELF code, so
copies are made by ``make_private_copy`` (callable ahead of time) and found by path.
"""
from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

ENV_MODULES = "INTERPKIT_COPIES"          # "name=path:name=path" for install_from_env()
ENV_DIR = "INTERPKIT_COPIES_DIR"
ENV_LIBPYTHON = "INTERPKIT_COPIES_LIBPYTHON"  # this interpreter's libpython copy (copies backend)


def interpreter_tag() -> str:
    """A tag unique to this interpreter in this process (interpreter ids are never reused)."""
    ident = None
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            api = __import__(name)
            current = api.get_current()
            ident = current[0] if isinstance(current, tuple) else current
            break
        except Exception:  # noqa: BLE001 - module absent or API differs: fall back below
            continue
    if ident is None:
        ident = id(sys)  # one sys module per interpreter
    return f"{os.getpid()}-{int(ident)}"


def copy_path(source: Path, module: str, tag: str, directory: Path) -> Path:
    """Where interpreter `tag`'s copy of `source` lives: a renamed file, one folder per source."""
    digest = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:12]
    suffix = next((s for s in importlib.machinery.EXTENSION_SUFFIXES if Path(source).name.endswith(s)), ".so")
    return Path(directory) / digest / f"{module.rpartition('.')[2]}.ik{tag}{suffix}"


def make_private_copy(source: Path, module: str, tag: str, directory: Path, *, libpython: str | None = None,
                      relink: bool = True) -> Path:
    """Copy `source` for one interpreter and relink the copy so nothing ties it to the others:
    GNU_UNIQUE symbols become weak, a SONAME gets the tag, and (copies backend) DT_NEEDED names
    that interpreter's own libpython. Written to a temp name and renamed: never half a file."""
    from interpkit.shims.plan import Edit, EditKind
    from interpkit.shims.relink import apply_binary_edits, read_state

    target = copy_path(source, module, tag, directory)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".copy-", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o755)
        state = read_state(Path(tmp))
        edits = [Edit(EditKind.UNIQUE_TO_WEAK, name) for name in state.gnu_unique] if relink else []
        if state.soname:
            edits.append(Edit(EditKind.SET_SONAME, "DT_SONAME", value=f"{state.soname}.ik{tag}", old=state.soname))
        if libpython:
            edits.append(Edit(EditKind.SET_LIBPYTHON, "DT_NEEDED libpython", value=libpython))
        apply_binary_edits(Path(tmp), edits)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


class PrivateCopyFinder(importlib.abc.MetaPathFinder):
    """Finds the listed extension modules at this interpreter's private copy."""

    def __init__(self, modules: dict[str, str], directory: str, tag: str | None = None,
                 libpython: str | None = None):
        self.modules = dict(modules)
        self.directory = Path(directory)
        self.tag = tag or interpreter_tag()
        self.libpython = libpython
        self.loaded: dict[str, str] = {}     # module -> copy path, for tests and reports

    def find_spec(self, fullname, path=None, target=None):
        source = self.modules.get(fullname)
        if source is None:
            return None
        copy = copy_path(Path(source), fullname, self.tag, self.directory)
        if not copy.exists():
            copy = make_private_copy(Path(source), fullname, self.tag, self.directory, libpython=self.libpython)
        self.loaded[fullname] = str(copy)
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(copy))
        return importlib.util.spec_from_file_location(fullname, str(copy), loader=loader)


def install(modules: dict[str, str], directory: str | None = None, tag: str | None = None,
            libpython: str | None = None) -> PrivateCopyFinder:
    """Put a PrivateCopyFinder first on this interpreter's sys.meta_path (once).

    `libpython` is the soname of this interpreter's own libpython copy (copies backend): each
    private copy then needs it by DT_NEEDED, so its Py* references bind to this interpreter."""
    for finder in sys.meta_path:
        if isinstance(finder, PrivateCopyFinder) or type(finder).__name__ == "PrivateCopyFinder":
            finder.modules.update(modules)
            return finder
    directory = directory or os.environ.get(ENV_DIR) or os.path.join(tempfile.gettempdir(), f"interpkit-copies-{os.getuid()}")
    finder = PrivateCopyFinder(modules, directory, tag, libpython or os.environ.get(ENV_LIBPYTHON) or None)
    sys.meta_path.insert(0, finder)
    return finder


def install_from_env() -> PrivateCopyFinder | None:
    """Install from INTERPKIT_COPIES ("name=path:name=path"); the runtime's bootstrap calls this."""
    spec = os.environ.get(ENV_MODULES, "")
    modules = dict(item.split("=", 1) for item in spec.split(os.pathsep) if "=" in item)
    return install(modules) if modules else None


def install_from_manifest(manifest: str | os.PathLike, directory: str | None = None) -> PrivateCopyFinder:
    """Install for the modules an `interpkit patch` output lists in interpkit-copies.json."""
    import json

    manifest = Path(manifest)
    data = json.loads(manifest.read_text())
    modules = {name: str((manifest.parent / rel).resolve()) for name, rel in data.get("modules", {}).items()}
    return install(modules, directory)


# --------------------------------------------------------------------------- observing it

#: Resident memory the legacy probe may hold (the sandbox kills it past this).
LEGACY_PROBE_MEMORY_MB = 4096


def probe_legacy(source: Path, module: str, interpreters: int = 2, *, with_copies: bool, timeout: float = 60.0,
                 python: str | None = None, memory_limit_mb: int | None = LEGACY_PROBE_MEMORY_MB) -> dict:
    """Import `module` from `source` in N legacy subinterpreters of one sandboxed child, with or
    without private copies.

    Returns the ``ProbeOutcome`` JSON (interpkit.native.sandbox.outcome) with ``status`` as its one-word
    ``summary`` (ok | shared_state | import_error | crash | hang | error | skipped) and
    ``files``/``images``: the file each interpreter loaded and how many images served them.
    """
    import sysconfig

    from interpkit.analyzer.plumbing.modules import abi_matches, module_location
    from interpkit.native import sandbox
    from interpkit.native.sandbox.outcome import ProbeOutcome, merge_steps, outcome_from_records

    python = python or sys.executable
    if not abi_matches(Path(source), sysconfig.get_config_var("SOABI")):
        skipped = ProbeOutcome("skipped", "built for another Python")
        return {**skipped.to_json(), "status": skipped.summary}
    root = str((module_location(Path(source)) or (None, Path(source).parent))[1])
    source = str(Path(source).resolve())
    with tempfile.TemporaryDirectory(prefix="interpkit-copies-probe-") as copies_dir:
        # The child (interpkit.native.guest.legacy_probe) imports through this module's finder
        # when asked to: it is named here, so the guest never imports a layer above it.
        job = {"module": module, "source": source, "n": interpreters, "repo": str(sandbox.TREE_ROOT),
               "root": root, "hook": f"{__name__}:install" if with_copies else None,
               "hook_args": [{module: source}, copies_dir]}
        run = sandbox.run([python, "-X", "faulthandler", "-m", "interpkit.native.guest.legacy_probe"], job,
                          limits=sandbox.Limits(timeout_s=timeout, memory_limit_mb=memory_limit_mb),
                          env=sandbox.tree_env())
    result = run.last("result")
    outcome = outcome_from_records(merge_steps(run.records), result["outcome"] if result else None,
                                   run.ending)
    extra = {"files": result.get("files", []), "images": result.get("images", 0)} if result else {}
    return {**outcome.to_json(), "status": outcome.summary, **extra}
