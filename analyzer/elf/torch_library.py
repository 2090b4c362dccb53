"""Op-library facts: what a binary registers into torch's dispatcher and c10's registries.

Read from the binary only, never by loading it. The traces torch's registration macros leave
(torch/library.h, torch/csrc/stable/library.h, c10/util/Registry.h):

- `TORCH_LIBRARY(ns, m)`, `TORCH_LIBRARY_FRAGMENT(ns, m)` and `TORCH_LIBRARY_IMPL(ns, k, m)`
  each define a static `torch::detail::TorchLibraryInit` whose constructor builds a
  `torch::Library(Kind, std::string ns, std::optional<DispatchKey>, file, line)` at static
  initialisation. The constructor lives in libtorch_cpu, so an op library *imports*
  `_ZN5torch7LibraryC1ENS0_4Kind...`; libtorch_cpu, which owns the dispatcher, defines it.
- The stable-ABI macros (`STABLE_TORCH_LIBRARY*`, torchvision's `_C_stable.so`) import
  `aoti_torch_library_init_def` / `_impl` / `_fragment` instead, one per kind.
- The legacy API (`static auto r = c10::RegisterOperators().op(...)`) imports
  `c10::RegisterOperators` members.
- The init functions and static objects are named after the macro arguments
  (`TORCH_LIBRARY_init_<ns>`, `TORCH_LIBRARY_IMPL_init_<ns>_<Key>_<uid>`; "the EXACT NAMING
  ... matters for the code analyzer", library.h), so `.strtab`, where present, gives each
  registration's namespace and dispatch key.
- `C10_REGISTER_CLASS` / `C10_REGISTER_TYPED_CLASS` call a registry accessor defined by
  `C10_DEFINE_REGISTRY` in another library (`c10::impl::PyInterpreterHooksRegistry()` in
  libc10, imported by libtorch_python) and keep a static `g_<Registry><n>` Registerer.

When `.strtab` is stripped, namespaces fall back to the `ns::op` schema strings in `.rodata`.
"""
from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from typing import Callable

from interpkit.analyzer.elf import search
from interpkit.analyzer.elf.image import ElfImage
from interpkit.analyzer.elf.search import Finder
from interpkit.analyzer.plumbing.workers import Background

DEF, FRAGMENT, IMPL, LEGACY = "def", "fragment", "impl", "legacy"

# Imported entry points of each registration API, by the kind they register.
_LIBRARY_CTOR_PREFIXES = ("_ZN5torch7LibraryC1ENS0_4Kind", "_ZN5torch7LibraryC2ENS0_4Kind")
_STABLE_ENTRIES = {"aoti_torch_library_init_def": DEF, "aoti_torch_library_init_fragment": FRAGMENT,
                   "aoti_torch_library_init_impl": IMPL}
_LEGACY_PREFIX = "_ZN3c1017RegisterOperators"

# <len><identifier> runs of a mangled name: the identifiers torch's macros paste together.
_SCHEMA_NS_RE = re.compile(rb"\x00([A-Za-z_][A-Za-z0-9_]*)::[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?(?=[\x00(])")
_NESTED_RE = re.compile(r"(\d+)")
_C10_NAMESPACES = frozenset({"c10", "at", "torch", "caffe2"})
_SCAN_LIMIT = 512 * 1024 * 1024


@dataclass(frozen=True)
class Registration:
    kind: str                     # def, fragment, impl, legacy
    namespace: str | None         # None when the binary does not say (stripped, legacy API)
    dispatch_key: str | None = None   # impl only
    api: str = "torch"            # torch (library.h), stable (stable/library.h), legacy

    def to_json(self) -> dict:
        out = {"kind": self.kind, "api": self.api}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.dispatch_key:
            out["dispatch_key"] = self.dispatch_key
        return out


@dataclass(frozen=True)
class OpLibraryFacts:
    registrations: tuple[Registration, ...] = ()
    registries: tuple[str, ...] = ()      # c10 registries this binary adds entries to (defined elsewhere)

    @property
    def registers_operators(self) -> bool:
        return bool(self.registrations)

    @property
    def defined_namespaces(self) -> tuple[str, ...]:
        """Namespaces this binary defines operators in: a second registration of these aborts."""
        return tuple(sorted({r.namespace for r in self.registrations
                             if r.kind in (DEF, FRAGMENT) and r.namespace}))

    @property
    def defines_operators(self) -> bool:
        return any(r.kind in (DEF, FRAGMENT, LEGACY) for r in self.registrations)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(sorted({r.namespace for r in self.registrations if r.namespace}))

    def to_json(self) -> dict:
        out: dict = {}
        if self.registrations:
            out["registrations"] = [r.to_json() for r in self.registrations]
            out["namespaces"] = list(self.namespaces)
        if self.registries:
            out["registries"] = list(self.registries)
        return out


NONE = OpLibraryFacts()


def _joined(names: frozenset[str]) -> str:
    """All names in one string, each after a NUL: one C-level search answers "does any name
    start with / contain X" where the answer is no (names from a string table never hold a
    NUL; one that did could only make the search say yes, and then the exact loop decides)."""
    return "\0" + "\0".join(names)


def _entry_kinds(imports: frozenset[str], joined: str | None = None) -> dict[str, str]:
    """api -> kinds the imported registration entry points allow ({"torch": "*"} for the C++ ctor)."""
    found: dict[str, set[str]] = {}
    joined = _joined(imports) if joined is None else joined
    if (not any("\0" + prefix in joined for prefix in (*_LIBRARY_CTOR_PREFIXES, _LEGACY_PREFIX))
            and not imports & _STABLE_ENTRIES.keys()):
        return found
    for name in imports:
        if name.startswith(_LIBRARY_CTOR_PREFIXES):
            found.setdefault("torch", set()).add("*")
        elif name in _STABLE_ENTRIES:
            found.setdefault("stable", set()).add(_STABLE_ENTRIES[name])
        elif name.startswith(_LEGACY_PREFIX):
            found.setdefault("legacy", set()).add(LEGACY)
    return found


def _parse_init_name(identifier: str) -> Registration | None:
    """`TORCH_LIBRARY_IMPL_init_torchvision_CPU_0` -> impl of torchvision for CPU."""
    api = "stable" if identifier.startswith("STABLE_") else "torch"
    rest = identifier.removeprefix("STABLE_").removeprefix("TORCH_LIBRARY")
    if rest.startswith("_IMPL_"):
        kind, rest = IMPL, rest[len("_IMPL_"):]
    elif rest.startswith("_FRAGMENT_"):
        kind, rest = FRAGMENT, rest[len("_FRAGMENT_"):]
    else:
        kind, rest = DEF, rest[1:]
    rest = rest.removeprefix("static_").removeprefix("init_")
    if not rest:
        return None
    if kind is DEF:
        return Registration(DEF, rest, None, api)
    # FRAGMENT and IMPL append C10_UID (a counter); IMPL puts the dispatch key (CamelCase,
    # no underscores) before it, while the namespace itself may contain underscores.
    head, _, uid = rest.rpartition("_")
    if not uid.isdigit() or not head:
        return None
    if kind is FRAGMENT:
        return Registration(FRAGMENT, head, None, api)
    namespace, _, key = head.rpartition("_")
    if not namespace or not key:
        return None
    return Registration(IMPL, namespace, key, api)


# The macros' identifiers: a literal prefix lets the regex engine skim for it (an 8 MB .strtab in
# a few ms; a pattern anchored on the mangled length digits would try every byte).
_INIT_NAME_RE = re.compile(rb"TORCH_LIBRARY(?:_IMPL|_FRAGMENT)?_(?:static_)?init_[A-Za-z0-9_]+")


def _strings_named(span) -> list[Registration]:
    """Registrations named in a string table, span = (haystack, start, end) as
    ElfImage.section_span gives it. The mangled length prefix in front of each hit
    (`_ZL29TORCH_LIBRARY_init_...`) gives the identifier's exact end: after it come the
    mangled parameter types. Hits are found with bytes.find on the literal every match starts
    with, then matched in place: the same matches as finditer, without the regex engine
    walking the whole table."""
    haystack, lo, hi = span
    identifiers: set[bytes] = set()
    at = haystack.find(b"TORCH_LIBRARY", lo, hi)
    while at >= 0:
        match = _INIT_NAME_RE.match(haystack, at, hi)
        if match is None:
            at = haystack.find(b"TORCH_LIBRARY", at + 1, hi)
            continue
        start = match.start()
        if start - lo >= 7 and bytes(haystack[start - 7:start]) == b"STABLE_":
            start -= 7
        digits = start
        while digits > lo and 48 <= haystack[digits - 1] <= 57:
            digits -= 1
        if digits < start:
            length = int(bytes(haystack[digits:start]))
            identifier = bytes(haystack[start:min(start + length, hi)])
            if len(identifier) == length:
                identifiers.add(identifier)
        else:   # an unmangled (extern "C") name: the whole match
            identifiers.add(bytes(haystack[start:match.end()]))
        at = haystack.find(b"TORCH_LIBRARY", match.end(), hi)
    out = []
    for identifier in sorted(identifiers):
        reg = _parse_init_name(identifier.decode("ascii"))
        if reg is not None:
            out.append(reg)
    return out


def _kept_registerers(span, registries: tuple[str, ...]) -> set[str]:
    """Registries with a static `g_<Registry><n>` Registerer (C10_REGISTER_CLASS) in this binary's
    symbols. span: (haystack, start, end) of the string table, as ElfImage.section_span gives it.

    One find per registry name (a long literal: a fast pass over libtorch_cpu.so's 76 MB .strtab)
    instead of one regex walk. The same set as finditer over `g_(A|B|...)[0-9]` wherever no
    name contains `g_` and none is a prefix of another (then no two matches can overlap, so
    non-overlapping search misses none); otherwise that regex is what runs."""
    if not registries:
        return set()
    haystack, start, end = span
    names = sorted({r.rpartition("::")[2] for r in registries})
    if any("g_" in n for n in names) or any(a != b and b.startswith(a) for a in names for b in names):
        pattern = re.compile(rb"g_(" + b"|".join(re.escape(n.encode()) for n in names) + rb")[0-9]")
        return {m.group(1).decode() for m in pattern.finditer(haystack, start, end)}
    kept = set()
    with Finder(haystack) as finder:   # libc memmem where it can: off the GIL, and faster
        for name in names:
            needle = b"g_" + name.encode()
            at = finder.find(needle, start, end)
            while at >= 0:
                after = at + len(needle)
                if after < end and 48 <= haystack[after] <= 57:
                    kept.add(name)
                    break
                at = finder.find(needle, at + 1, end)
    return kept


def _imported_registries(imports: frozenset[str], joined: str | None = None) -> tuple[str, ...]:
    """`c10::impl::PyInterpreterHooksRegistry()` style accessors this binary calls but does not define."""
    names = set()
    if "Registry" not in (_joined(imports) if joined is None else joined):
        return ()
    for name in imports:
        if not (name.startswith("_ZN") and "Registry" in name and name.endswith("Ev")):
            continue
        parts, at = [], 3
        text = name
        while at < len(text) and text[at].isdigit():
            match = _NESTED_RE.match(text, at)
            length = int(match.group(1))
            start = match.end()
            parts.append(text[start:start + length])
            at = start + length
        tail = text[at:]
        if tail.startswith("B"):   # an ABI tag such as B5cxx11
            tag = _NESTED_RE.match(tail, 1)
            tail = tail[tag.end() + int(tag.group(1)):] if tag else tail
        if tail == "Ev" and len(parts) >= 2 and parts[0] in _C10_NAMESPACES and parts[-1].endswith("Registry"):
            names.add("::".join(parts))
    return tuple(sorted(names))


def _span(image: ElfImage, name: str):
    """(haystack, start, end) of the named section, searched in place in the file's mapping
    (libtorch_cuda.so's .strtab is 68 MiB; copying it costs more than searching it); empty
    when absent or beyond the scan limit."""
    section = image.section_by_name(name)
    if section is None or section.size == 0 or section.size > _SCAN_LIMIT:
        return b"", 0, 0
    if section.offset + section.size > image.file_size:
        raise ValueError(f"section {name} runs past the end of the file")
    return image.section_span(section)


def _section(image: ElfImage, name: str):
    """The section's bytes, as a zero-copy view of the file's read-only mapping where it has one."""
    haystack, start, end = _span(image, name)
    if start == 0 and end == len(haystack):
        return haystack
    return memoryview(haystack)[start:end]


def read_op_library(image: ElfImage, imports: frozenset[str]) -> OpLibraryFacts:
    """Registrations and registry entries of one binary; NONE for anything that imports no entry point."""
    joined = _joined(imports)
    return _op_library(image, _entry_kinds(imports, joined), _imported_registries(imports, joined))


def start_op_library(image: ElfImage, imports: frozenset[str]) -> tuple[Callable[[], OpLibraryFacts], Background | None]:
    """(read_op_library's answer as a function to call at its turn, the search started for it).
    Where the answer needs Registerer names looked up in a large mapped .strtab (76 MB in
    libtorch_cpu.so), that search starts now on a second thread (search.py); the caller waits
    for it before closing the image. Anything that would raise is left to raise at its turn."""
    try:
        joined = _joined(imports)
        apis, registries = _entry_kinds(imports, joined), _imported_registries(imports, joined)
        span = _span(image, ".strtab") if registries else None
    except Exception:  # noqa: BLE001 - raised again, in order, by read_op_library
        return (lambda: read_op_library(image, imports)), None
    if span is None or not isinstance(span[0], mmap.mmap) or span[2] - span[1] < search.BACKGROUND_BYTES:
        return (lambda: _op_library(image, apis, registries)), None
    pending = Background(lambda: _kept_registerers(span, registries), "interpkit-elf-search")
    return (lambda: _op_library(image, apis, registries, pending)), pending


def _op_library(image: ElfImage, apis: dict[str, set[str]], registries: tuple[str, ...],
                kept: Background | None = None) -> OpLibraryFacts:
    """read_op_library once the imports are read; kept: the Registerer search, already started."""
    if not apis and not registries:
        return NONE
    strtab_span = _span(image, ".strtab")
    strtab = _section(image, ".strtab")
    named = [r for r in _strings_named(strtab_span) if r.api in apis] if apis else []
    registrations: list[Registration] = list(dict.fromkeys(named))
    for api, kinds in apis.items():
        if any(r.api == api for r in registrations):
            continue
        # Stripped, or the legacy API: kinds from the imported entry points; namespaces from the
        # schema strings only when there is no .strtab to name them (a regex over a large .rodata
        # costs a quarter of a second in libtorch_cuda.so).
        namespaces = [] if strtab else sorted({
            m.group(1).decode() for m in _SCHEMA_NS_RE.finditer(_section(image, ".rodata"))
            if m.group(1).decode() not in _C10_NAMESPACES | {"std"}})
        for kind in sorted(kinds):
            kind = DEF if kind == "*" else kind
            for namespace in namespaces or [None]:
                registrations.append(Registration(kind, namespace, None, api))
    if registries:
        # Only registries this binary keeps a Registerer for: calling an accessor to look
        # something up is not registering into it.
        # Stripped of .strtab, the binary cannot show which: claim nothing.
        if not strtab:
            kept = set()
        else:
            kept = kept.result() if kept is not None else _kept_registerers(strtab_span, registries)
        registries = tuple(r for r in registries if r.rpartition("::")[2] in kept)
    return OpLibraryFacts(tuple(sorted(registrations, key=lambda r: (r.namespace or "", r.kind, r.dispatch_key or ""))),
                          registries)
