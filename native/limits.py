"""Where the namespaces runtime hits glibc's limits, and the errors that name them.

docs/facts.md fact 5: glibc 2.36 has 16 link-map namespaces, the base one included, so at most
``NAMESPACE_CEILING`` = 15 interpreters, and only when ``GLIBC_TUNABLES=glibc.rtld.nns=16``
was set before the process started (the tunable sizes the static TLS reserve that every
namespace's libc takes a bite of). With the default tunables the 12th ``dlmopen`` fails with
"cannot allocate memory in static TLS block". Libraries built with initial-exec TLS
(``DF_STATIC_TLS``, e.g. libgomp) eat the same reserve, so fewer interpreters fit once they
are loaded.

Also here: finding the running Python's shared libpython ("libpython not shared" otherwise).
Reading ELF headers uses pyelftools and only reads files.
"""
from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from interpkit.native.errors import LibpythonNotShared, NamespaceLimitError, StaticTLSExhausted

#: Namespaces besides the base one (glibc's DL_NNS is 16).
NAMESPACE_CEILING = 15
RAISE_LIMIT_HINT = (
    "set GLIBC_TUNABLES=glibc.rtld.nns=16 in the environment before the process starts "
    f"(setting it later has no effect); the ceiling is {NAMESPACE_CEILING} interpreters"
)
DF_STATIC_TLS = 0x10


@dataclass(frozen=True)
class TLSUser:
    """A loaded object with a TLS segment; ``static`` when it demands initial-exec TLS."""

    path: str
    tls_size: int
    static: bool

    def describe(self) -> str:
        flag = "DF_STATIC_TLS" if self.static else "PT_TLS"
        return f"{Path(self.path).name} ({self.tls_size} B, {flag})"


def mapped_objects(maps: Path = Path("/proc/self/maps")) -> list[str]:
    """Distinct file paths mapped into this process, in first-seen order."""
    seen: dict[str, None] = {}
    for line in maps.read_text().splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            seen.setdefault(parts[5].removesuffix(" (deleted)"), None)
    return list(seen)


def find_libpython() -> Path:
    """The shared libpython the running interpreter executes from (mapped in this process).

    Raises LibpythonNotShared when CPython is linked into the executable itself.
    """
    version = f"libpython{sys.version_info.major}.{sys.version_info.minor}"
    for path in mapped_objects():
        name = Path(path).name
        if name.startswith(version) and ".so" in name:
            return Path(path)
    # A libpython file may still exist (Debian ships one for embedding next to a static
    # executable); it is not the running interpreter, so it is only suggested.
    candidate = Path(sysconfig.get_config_var("LIBDIR") or "/") / (
        sysconfig.get_config_var("INSTSONAME") or "libpython.so")
    suggestion = (f"; {candidate} exists: pass libpython= to use it anyway"
                  if candidate.is_file() else "")
    raise LibpythonNotShared(
        f"cannot start namespaced interpreters (libpython not shared: {sys.executable} links "
        "CPython statically; use a Python built with --enable-shared, e.g. "
        f"PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install{suggestion})")


def check_libpython(path: Path) -> str | None:
    """Return why ``path`` cannot serve as this process's namespaced libpython, or None."""
    if not path.is_file():
        return f"{path} does not exist"
    expected = f"libpython{sys.version_info.major}.{sys.version_info.minor}"
    if not path.name.startswith(expected):
        # The host binding shares struct layouts (PyConfig) with the namespace's libpython.
        return f"{path.name} is not {expected} (the runtime needs the running Python's version)"
    return None


def nns_tunable(environ: Path = Path("/proc/self/environ")) -> int | None:
    """glibc.rtld.nns as set when this process started (later changes do not count)."""
    try:
        entries = environ.read_bytes().split(b"\0")
    except OSError:
        entries = [f"{k}={v}".encode() for k, v in os.environ.items()]
    for entry in entries:
        if entry.startswith(b"GLIBC_TUNABLES="):
            for item in entry[len(b"GLIBC_TUNABLES="):].decode(errors="replace").split(":"):
                key, _, value = item.partition("=")
                if key == "glibc.rtld.nns" and value.isdigit():
                    return int(value)
    return None


def tls_users(paths: list[str]) -> list[TLSUser]:
    """Objects among ``paths`` that have a PT_TLS segment, static-TLS ones first."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    users: dict[str, TLSUser] = {}
    for path in paths:
        if path in users:
            continue
        try:
            with open(path, "rb") as stream:
                if stream.read(4) != b"\x7fELF":
                    continue
                stream.seek(0)
                elf = ELFFile(stream)
                size = sum(seg["p_memsz"] for seg in elf.iter_segments()
                           if seg["p_type"] == "PT_TLS")
                if not size:
                    continue
                dynamic = elf.get_section_by_name(".dynamic")
                flags = 0
                if dynamic is not None:
                    for tag in dynamic.iter_tags():
                        if tag.entry.d_tag == "DT_FLAGS":
                            flags = tag.entry.d_val
                users[path] = TLSUser(path, size, bool(flags & DF_STATIC_TLS))
        except (OSError, ELFError, ValueError):
            continue
    return sorted(users.values(), key=lambda user: (not user.static, -user.tls_size, user.path))


def limit_error(dlerror: str, *, opened: int) -> NamespaceLimitError | None:
    """Turn a dlmopen failure into the error that names its cause, or None if unrelated.

    ``opened`` is how many namespaces this process had dlmopen'd when the failing call ran
    (closed interpreters included: glibc does not give their namespaces back).
    """
    nns = nns_tunable()
    setting = (f"glibc.rtld.nns={nns}" if nns is not None
               else "default glibc tunables")
    if "no more namespaces available" in dlerror:
        return NamespaceLimitError(
            f"cannot start another interpreter (too many interpreters: glibc has no more "
            f"link-map namespaces after {opened} were opened in this process, with {setting}; "
            f"closed interpreters do not give theirs back); the ceiling is "
            f"{NAMESPACE_CEILING} interpreters per process")
    if "static TLS" in dlerror:
        users = tls_users(mapped_objects())
        listed = ", ".join(user.describe() for user in users[:8]) or "none found"
        hint = (RAISE_LIMIT_HINT if (nns or 4) < 16
                else f"the ceiling is {NAMESPACE_CEILING} interpreters, fewer with "
                     "DF_STATIC_TLS libraries loaded")
        return StaticTLSExhausted(
            f"cannot start another interpreter (static TLS exhausted after {opened} "
            f"namespaces were opened in this process, with {setting}; loaded libraries "
            f"with TLS: {listed}); {hint}")
    return None


def too_many(requested: int) -> NamespaceLimitError | None:
    """Refuse up front a request that can never fit under the namespace ceiling."""
    if requested > NAMESPACE_CEILING:
        return NamespaceLimitError(
            f"cannot start {requested} interpreters (too many interpreters: glibc allows at "
            f"most {NAMESPACE_CEILING} namespaced interpreters per process, and only with "
            f"GLIBC_TUNABLES=glibc.rtld.nns=16 set before the process starts)")
    return None
