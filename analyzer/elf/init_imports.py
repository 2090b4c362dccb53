"""What an extension imports while it initialises, and the refusals it carries, from its read-only data.

An extension is only as loadable as the extension modules its init imports: a module that
declares own-GIL support but calls numpy's `import_array()` fails in an isolated interpreter
because numpy's `_multiarray_umath` refuses. The names such an init imports are C string
literals in `.rodata`: numpy's headers put `"numpy._core._multiarray_umath"` (and the 1.x
spelling `"numpy.core._multiarray_umath"`) next to the capsule name `"_ARRAY_API"`; Cython
passes the dotted name of every cimported module to its import helpers; hand-written C passes
a literal to `PyImport_ImportModule`. This module only collects candidate names; which of them
are extension modules of the scanned tree is decided over the whole scan (rule IK105).

Guards that no slot shows are error messages the binary carries (see docs/module-declarations.md).
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from interpkit.analyzer.elf.image import ElfImage

# A dotted Python name between NULs: "numpy._core._multiarray_umath\0".
_DOTTED = re.compile(rb"(?<=\x00)[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?=\x00)")
_MAX_NAMES = 2000
NUMPY_CAPSULES = (b"_ARRAY_API\x00", b"_UFUNC_API\x00")


class Guard(str, enum.Enum):
    """A refusal coded into the module itself, found by its message."""

    ONCE_PER_PROCESS = "once-per-process"          # a second import anywhere in the process fails
    FIRST_INTERPRETER_ONLY = "first-interpreter-only"   # any interpreter but the first fails

    def __str__(self) -> str:
        return self.value


# (message prefix the binary holds, guard, who writes it). Verified against the sources named in
# docs/module-declarations.md; matched as bytes, never by package name.
GUARD_MESSAGES = (
    (b"cannot load module more than once per process", Guard.ONCE_PER_PROCESS, "numpy >= 2.4"),
    (b"Interpreter change detected - this module can only be loaded into one interpreter per process",
     Guard.FIRST_INTERPRETER_ONLY, "Cython without module state"),
    (b"PyO3 modules do not yet support subinterpreters", Guard.FIRST_INTERPRETER_ONLY, "PyO3"),
    (b"PyO3 modules compiled for CPython 3.8 or older may only be initialized once per interpreter process",
     Guard.ONCE_PER_PROCESS, "PyO3"),
)


@dataclass(frozen=True)
class InitImports:
    """Dotted names the binary's read-only data holds, and the guards its messages show."""

    names: tuple[str, ...] = ()
    numpy_capsule: bool = False                          # holds "_ARRAY_API"/"_UFUNC_API"
    guards: tuple[tuple[str, str], ...] = ()             # (Guard value, who writes that message)

    def to_json(self) -> dict:
        out: dict = {}
        if self.numpy_capsule:
            out["numpy_capsule"] = True
        if self.guards:
            out["guards"] = [{"guard": g, "by": by} for g, by in self.guards]
        return out


NO_INIT_IMPORTS = InitImports()


def read_init_imports(image: ElfImage, limit: int) -> InitImports:
    """Candidate module names and guard messages in .rodata (sections over `limit` bytes are skipped)."""
    rodata = image.section_by_name(".rodata")
    if rodata is None or rodata.size == 0 or rodata.size > limit:
        return NO_INIT_IMPORTS
    data = b"\x00" + bytes(image.section_bytes(rodata))   # the first string starts the section
    names: list[str] = []
    seen: set[bytes] = set()
    for match in _DOTTED.finditer(data):
        name = match.group()
        if name not in seen:
            seen.add(name)
            names.append(name.decode())
            if len(names) >= _MAX_NAMES:
                break
    guards = tuple(dict.fromkeys((g.value, by) for message, g, by in GUARD_MESSAGES if message in data))
    return InitImports(tuple(names), any(c in data for c in NUMPY_CAPSULES), guards)
