"""ElfFacts: everything rules may read about one ELF file, built once and cached.

Facts are immutable. What a file shows by itself (`build_facts`) is cached in a bounded,
least-recently-used table keyed by (real path, size, mtime, options); what a scan learns from
the file's DT_NEEDED closure (where each library resolved, init kinds inferred from a
dependency) is a separate `ClosureFacts`, joined into a new ElfFacts by `with_closure` for that
scan only. A cached entry therefore never carries one scan's closure into the next
(`interpkit patch` scans several times in one process).
"""
from __future__ import annotations

import mmap
import os
import re
import threading
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Mapping

from interpkit.analyzer.elf import search
from interpkit.analyzer.elf.image import (DF_STATIC_TLS, DT_FLAGS, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME,
                                SHT_NOBITS, ElfImage)
from interpkit.analyzer.elf.init_imports import NO_INIT_IMPORTS, InitImports, read_init_imports
from interpkit.analyzer.elf.modinit import InitInfo, ModuleInit, read_module_inits
from interpkit.analyzer.plumbing.workers import Background
from interpkit.analyzer.elf.symbols import LINKER_SYMBOLS, STT_OBJECT, Symbols
from interpkit.analyzer.elf.torch_library import NONE as NO_OP_LIBRARY, OpLibraryFacts, start_op_library

_LIBPYTHON_RE = re.compile(r"^libpython(\d+)\.(\d+)[a-z]*\.so")
_EXT_TAG_RE = re.compile(r"\.cpython-(\d)(\d+)[a-z]*-")

# Marker strings each binding generator leaves in .rodata (checked in this order: a PyO3 or
# nanobind module may also mention pybind11 in a message, never the other way round). Each
# pattern comes with the fixed strings its matches start with: a fixed-string search (libc
# memmem, or bytes.find; search.Finder) skims .rodata for those an order of magnitude faster
# than the regex engine walks it (18 MB in libtorch_cpu.so), and no match can start before the
# first of them.
_GENERATOR_MARKERS: tuple[tuple[str, re.Pattern[bytes], tuple[bytes, ...]], ...] = (
    ("pyo3", re.compile(rb"pyo3-(\d+\.\d+\.\d+)|PyO3 modules"), (b"pyo3-", b"PyO3 modules")),
    ("nanobind", re.compile(rb"__nb_internals|nanobind"), (b"__nb_internals", b"nanobind")),
    ("pybind11", re.compile(rb"__pybind11_internals_v(\d+)"), (b"__pybind11_internals_v",)),
    ("cython", re.compile(rb"_cython_(\d+_\d+_\d+[a-z0-9]*)|cython_runtime|__pyx_"),
     (b"_cython_", b"cython_runtime", b"__pyx_")),
    ("cffi", re.compile(rb"_cffi_backend"), (b"_cffi_backend",)),
)
# Each find is a pass over all of .rodata, so prefixes that share a substring are looked up
# through it: one pass for both (a hit is checked in place), 7 passes instead of 9.
_SHARED_ANCHORS = {b"__nb_internals": b"_internals", b"__pybind11_internals_v": b"_internals",
                   b"_cython_": b"cython_", b"cython_runtime": b"cython_"}
_ANCHOR_HITS_CHECKED = 64   # past this many hits of a shared anchor, look each prefix up alone
_RODATA_SCAN_LIMIT = 256 * 1024 * 1024


class FrozenMapping(Mapping):
    """A read-only mapping that pickles (MappingProxyType does not): facts go to the disk cache."""

    __slots__ = ("_items",)

    def __init__(self, items=()) -> None:
        object.__setattr__(self, "_items", dict(items))

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self) -> Iterator:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __reduce__(self):
        return (FrozenMapping, (tuple(self._items.items()),))

    def __repr__(self) -> str:
        return f"FrozenMapping({self._items!r})"


_NO_CLOSURE: Mapping[str, str | None] = FrozenMapping()


@dataclass(frozen=True)
class FactsOptions:
    """What changes the facts built from the same bytes; part of every cache key."""

    rodata_scan_limit: int = _RODATA_SCAN_LIMIT   # larger .rodata is not searched for generator markers


DEFAULT_OPTIONS = FactsOptions()


@dataclass(frozen=True)
class ClosureFacts:
    """What one scan's DT_NEEDED closure adds to a file's own facts."""

    libraries: tuple[tuple[str, str | None], ...] = ()   # (soname, resolved path or None), in search order
    inits: tuple[ModuleInit, ...] | None = None           # init kinds after delegation; None: unchanged


@dataclass(frozen=True)
class _Joined:
    """A list of names pickled as one string (ElfFacts.__getstate__)."""

    is_set: bool
    text: str
    count: int

    def unpack(self):
        names = self.text.split("\0")
        if len(names) != self.count:
            raise ValueError("damaged name list")
        return frozenset(names) if self.is_set else tuple(names)


@dataclass(frozen=True)
class ElfFacts:
    path: Path
    size: int
    mtime_ns: int
    machine: int
    elfclass: int
    soname: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    static_tls_flag: bool                 # DF_STATIC_TLS: initial-exec TLS, allocated at load time
    tls_filesz: int
    tls_memsz: int
    imports: frozenset[str]
    exports: tuple[str, ...]              # GLOBAL, default/protected visibility, defined, in .dynsym
    weak_export_count: int
    gnu_unique: tuple[str, ...]
    init: InitInfo
    generator: str | None                 # pyo3, nanobind, pybind11, cython, cffi, c, c++ (extensions)
    generator_version: str | None
    static_type_objects: tuple[str, ...]  # .symtab objects named like a static PyTypeObject
    op_library: OpLibraryFacts = NO_OP_LIBRARY   # dispatcher / c10 registry registrations (torch_library.py)
    init_imports: InitImports = NO_INIT_IMPORTS  # names the init may import, guard messages (extensions)
    # soname -> path (None: not found); empty in cached facts, set only on with_closure's copy.
    closure: Mapping[str, str | None] = field(default_factory=lambda: _NO_CLOSURE, compare=False)

    def __getstate__(self) -> dict:
        # The name lists travel as one NUL-joined string each: pickling 57k strings one by one
        # (each memoised) was most of the cost of storing libtorch_cpu.so's facts, and of
        # loading them warm. Symbol names never hold a NUL; a list that does stays as it is.
        state = dict(self.__dict__)
        for name in ("exports", "imports"):
            names = state[name]
            if not names or type(names) not in (tuple, frozenset):
                continue
            try:
                plain = "".join(names)
            except TypeError:   # not all strings
                continue
            if "\0" not in plain:   # no name holds a NUL of its own (a memchr, where counting was a loop)
                text = "\0".join(names)
                state[name] = _Joined(type(names) is frozenset, text, len(names))
        return state

    def __setstate__(self, state: dict) -> None:
        for name in ("exports", "imports"):
            value = state.get(name)
            if isinstance(value, _Joined):
                state[name] = value.unpack()
        self.__dict__.update(state)

    def with_closure(self, closure: ClosureFacts) -> "ElfFacts":
        """A copy for one scan that also carries its closure; self (the cached facts) is unchanged."""
        init = self.init if closure.inits is None else replace(self.init, inits=closure.inits)
        return replace(self, closure=FrozenMapping(closure.libraries), init=init)

    @property
    def is_extension(self) -> bool:
        return bool(self.init.inits)

    @property
    def libpython_needed(self) -> list[str]:
        return [n for n in self.needed if _LIBPYTHON_RE.match(n)]

    @property
    def python_tag(self) -> tuple[int, int] | None:
        """(3, 11) from `foo.cpython-311-x86_64-linux-gnu.so`, the ABI the file was built for."""
        match = _EXT_TAG_RE.search(self.path.name)
        return (int(match.group(1)), int(match.group(2))) if match else None

    @property
    def module_name(self) -> str:
        if self.init.inits:
            return self.init.inits[0].module
        return self.path.name.split(".", 1)[0]

    def summary(self) -> dict:
        """The facts the JSON report carries (FileResult.facts)."""
        out: dict = {
            "init": [i.to_json() for i in self.init.inits],
            "generator": self.generator,
            "needed": list(self.needed),
            "tls": {"static": self.static_tls_flag, "filesz": self.tls_filesz, "memsz": self.tls_memsz},
            "gnu_unique": len(self.gnu_unique),
            "exports": len(self.exports),
        }
        if self.generator_version:
            out["generator_version"] = self.generator_version
        if self.python_tag:
            out["built_for"] = "%d.%d" % self.python_tag
        if self.soname:
            out["soname"] = self.soname
        if self.rpath:
            out["rpath"] = list(self.rpath)
        if self.runpath:
            out["runpath"] = list(self.runpath)
        if self.closure:
            out["closure"] = dict(self.closure)
        if self.op_library.to_json():
            out["op_library"] = self.op_library.to_json()
        out.update(self.init_imports.to_json())
        return out


def _split_paths(values: list) -> tuple[str, ...]:
    return tuple(p for v in values for p in str(v).split(":") if p)


def _first_positions(haystack, start: int, end: int, wanted=None) -> dict[bytes, int]:
    """Where each marker prefix first occurs in haystack[start:end] (-1: nowhere), as
    haystack.find(prefix, start, end) says, with one pass per anchor (libc memmem where it can,
    search.Finder). wanted: only these prefixes (and those sharing their anchor); default all."""
    prefixes = [p for _name, _pattern, group in _GENERATOR_MARKERS for p in group]
    out: dict[bytes, int] = {}
    by_anchor: dict[bytes, list[bytes]] = {}
    for prefix in prefixes:
        by_anchor.setdefault(_SHARED_ANCHORS.get(prefix, prefix), []).append(prefix)
    with search.Finder(haystack) as finder:
        find = finder.find
        for anchor, group in by_anchor.items():
            if wanted is not None and not any(p in wanted for p in group):
                continue
            if group == [anchor]:
                out[anchor] = find(anchor, start, end)
                continue
            waiting = {prefix: prefix.index(anchor) for prefix in group}
            at, hits = find(anchor, start, end), 0
            while at >= 0 and waiting and hits < _ANCHOR_HITS_CHECKED:
                for prefix, shift in list(waiting.items()):
                    begin = at - shift
                    if begin >= start and begin + len(prefix) <= end and haystack[begin:begin + len(prefix)] == prefix:
                        out[prefix] = begin   # anchor hits come in order, so this is the first one
                        del waiting[prefix]
                at, hits = find(anchor, at + 1, end), hits + 1
            for prefix in waiting:
                out[prefix] = -1 if at < 0 else find(prefix, start, end)
    return out


def _rodata_span(image: ElfImage, options: FactsOptions):
    """(haystack, start, end) of the .rodata searched for markers; raises where it runs past the file."""
    rodata = image.section_by_name(".rodata")
    return (image.section_span(rodata) if rodata is not None and rodata.size <= options.rodata_scan_limit
            else (b"", 0, 0))


def _start_marker_search(image: ElfImage, options: FactsOptions) -> Background | None:
    """Every marker prefix's first position in a large .rodata, found on a second thread while
    the symbol tables are read (search.py); None (searched in place later, as before) where
    .rodata is small, absent, not mapped, or would raise: that error is _detect_generator's to
    give, at its turn. image.sections is read first anyway (Symbols.read)."""
    try:
        rodata = image.section_by_name(".rodata")
        if (rodata is None or rodata.size > options.rodata_scan_limit or rodata.size < search.BACKGROUND_BYTES
                or rodata.type == SHT_NOBITS or rodata.offset + rodata.size > image.file_size):
            return None
        haystack, start, end = image.section_span(rodata)
    except Exception:  # noqa: BLE001 - raised again in order by _detect_generator
        return None
    if not isinstance(haystack, mmap.mmap):
        return None
    return Background(lambda: _first_positions(haystack, start, end), "interpkit-elf-search")


def _detect_generator(image: ElfImage, symbols: Symbols, is_extension: bool,
                      options: FactsOptions = DEFAULT_OPTIONS,
                      found: dict[bytes, int] | None = None) -> tuple[str | None, str | None]:
    """found: every prefix's first position, already searched for (_start_marker_search)."""
    haystack, start, end = _rodata_span(image, options)
    first: dict[bytes, int] = dict(found) if found else {}
    for name, pattern, prefixes in _GENERATOR_MARKERS:
        # Looked up generator by generator, as the plain finds were: a match ends the search.
        if any(p not in first for p in prefixes):
            first.update(_first_positions(haystack, start, end, prefixes))
        starts = [first[p] for p in prefixes if first[p] >= 0]
        if not starts:
            continue
        match = pattern.search(haystack, min(starts), end)
        if match is not None:
            version = next((g for g in match.groups() if g), None)
            if isinstance(version, bytes):
                version = version.decode("ascii", "replace").replace("_", ".")
            return name, version
    if is_extension and symbols.any_name_startswith("__pyx_"):
        return "cython", None
    if not is_extension:
        return None, None
    cxx = any(n.startswith("libstdc++") or n.startswith("libc++") for n in image.dynamic_values(DT_NEEDED))
    return ("c++" if cxx else "c"), None


def _static_type_objects(symbols: Symbols) -> tuple[str, ...]:
    """Local data objects named like a type object (FooType, Foo_Type, foo_type): the C idiom for a
    static PyTypeObject. Only meaningful with PyType_Ready imported; .symtab is needed because
    static objects never reach .dynsym."""
    names = []
    table = symbols.symtab
    for index, (value, size, info, _other, shndx) in enumerate(table.rows):
        if info & 0xF == STT_OBJECT and shndx and size >= 200:
            name = table.names[index]
            if name.lower().endswith("type"):
                names.append(name)
    return tuple(sorted(set(names)))


def _sorted_exports(names: list[str]) -> tuple[str, ...]:
    """tuple(sorted(set(names) - LINKER_SYMBOLS)), 57k names in libtorch_cpu.so: a list in
    .dynsym order sorts faster than a set's order, duplicates (versioned names) are dropped in
    order, and each linker marker is found by bisection."""
    out = sorted(names)
    # A set's size tells whether any name repeats; the hashes it computes stay on the strings
    # for the sets the rules make of the exports (exported_symbol_clash), so this costs the
    # inserts only, where comparing neighbours cost a rich comparison each.
    if len(set(out)) != len(out):
        out = list(dict.fromkeys(out))
    for marker in LINKER_SYMBOLS:
        at = bisect_left(out, marker)
        if at < len(out) and out[at] == marker:
            del out[at]
    return tuple(out)


def build_facts(path: Path, options: FactsOptions = DEFAULT_OPTIONS) -> ElfFacts:
    path = Path(path)
    stat = path.stat()
    with ElfImage.open(path) as image:
        # Searches of large sections run on a second thread meanwhile (search.py); each is
        # waited for before the image closes, so nothing of ours outlives the call.
        background: list[Background] = []
        try:
            return _facts_of(path, stat, image, options, background)
        finally:
            for pending in background:
                pending.wait()


def _facts_of(path: Path, stat, image: ElfImage, options: FactsOptions, background: list[Background]) -> ElfFacts:
    markers = _start_marker_search(image, options)
    if markers is not None:
        background.append(markers)
    symbols = Symbols.read(image)
    imports = frozenset(symbols.imports())
    op_library, registerers = start_op_library(image, imports)
    if registerers is not None:
        background.append(registerers)
    init = read_module_inits(image, symbols, imports)
    is_extension = bool(init.inits)
    # Straight from the columns: a Symbol object per export costs 0.4 s over torch's libraries.
    exports, weak = symbols.export_names()
    # Sorted before the marker search's answer is asked for, to give that thread the time:
    # neither can raise, so the file's error (if any) stays the one it was.
    exports = _sorted_exports(exports)
    unique = tuple(sorted(symbols.gnu_unique_names()))
    flags = sum(v for v in image.dynamic_values(DT_FLAGS) if isinstance(v, int))
    tls = image.tls_segment or (0, 0)
    generator, version = _detect_generator(image, symbols, is_extension, options,
                                           markers.result() if markers is not None else None)
    static_types = _static_type_objects(symbols) if is_extension and "PyType_Ready" in imports else ()
    soname = next(iter(image.dynamic_values(DT_SONAME)), None)
    return ElfFacts(
        path=path, size=stat.st_size, mtime_ns=stat.st_mtime_ns,
        machine=image.machine, elfclass=image.elfclass,
        soname=str(soname) if soname else None,
        needed=tuple(str(n) for n in image.dynamic_values(DT_NEEDED)),
        rpath=_split_paths(image.dynamic_values(DT_RPATH)),
        runpath=_split_paths(image.dynamic_values(DT_RUNPATH)),
        static_tls_flag=bool(flags & DF_STATIC_TLS),
        tls_filesz=tls[0], tls_memsz=tls[1],
        imports=imports, exports=exports, weak_export_count=weak, gnu_unique=unique,
        init=init, generator=generator, generator_version=version,
        static_type_objects=static_types,
        op_library=op_library(),
        init_imports=read_init_imports(image, options.rodata_scan_limit) if is_extension else NO_INIT_IMPORTS,
    )


class FactsCache:
    """Least-recently-used ElfFacts, at most `max_entries` of them, keyed by (real path, size,
    mtime, options). Bounded because a long process (patch, a site-packages scan) would
    otherwise keep every file's export list; the few libraries a closure asks about again and
    again (libc10, libtorch) stay in because each lookup makes them the most recent."""

    def __init__(self, max_entries: int = 256, *, disk: bool = True) -> None:
        self.max_entries = max_entries
        self.disk = disk   # also keep facts in the persistent scan cache (warm scans skip reading ELF)
        self._entries: OrderedDict[tuple, ElfFacts] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(path: Path, options: FactsOptions) -> tuple:
        from interpkit.analyzer.plumbing.cache import realpath   # os.path.realpath, folders remembered inside one_scan()

        stat = os.stat(path)
        return (realpath(path), stat.st_size, stat.st_mtime_ns, options)

    def get(self, path: Path, options: FactsOptions = DEFAULT_OPTIONS) -> ElfFacts:
        key = self.key(path, options)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return cached
        facts = _DISK.get(path, options) if self.disk else None
        if facts is None:
            facts = build_facts(Path(path), options)  # outside the lock: reading a big library takes a while
            if self.disk:
                _DISK.put(path, options, facts)
        with self._lock:
            self.misses += 1
            self._entries[key] = facts
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return facts

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


class _DiskFacts:
    """ElfFacts pickled in the scan cache (`elf-facts-v1.sqlite`), keyed by the file as it is now,
    the options and the facts code; loaded only from a cache file that is ours alone."""

    def __init__(self) -> None:
        self._store = None
        self._print = ""
        self._pid = None

    def _open(self):
        from interpkit.analyzer.plumbing.cache import Store, code_fingerprint
        from interpkit.analyzer.elf import image, init_imports, modinit, search, slot_stores, symbols, torch_library

        from interpkit.analyzer.plumbing.cache import cache_root

        # reopened in a forked child (no shared connection) and when the cache folder changes
        where = (os.getpid(), cache_root())
        if self._pid != where:
            if self._store is not None and self._pid[0] == os.getpid():
                self._store.close()
            self._store = Store("elf-facts-v1")
            self._print = code_fingerprint([Path(m.__file__) for m in (image, init_imports, modinit, search, slot_stores,
                                                                      symbols, torch_library)]
                                           + [Path(__file__)])
            self._pid = where
        return self._store

    def get(self, path: Path, options: FactsOptions) -> "ElfFacts | None":
        import pickle

        from interpkit.analyzer.plumbing.cache import file_key

        store = self._open()
        if not store.enabled or not store.trusted:
            return None
        key = file_key(path, options, self._print)
        blob = store.get(key) if key else None
        if blob is None:
            return None
        try:
            facts = pickle.loads(blob)
        except Exception:  # noqa: BLE001 - a damaged entry only costs a rebuild
            return None
        return facts if isinstance(facts, ElfFacts) else None

    def put(self, path: Path, options: FactsOptions, facts: "ElfFacts") -> None:
        import pickle

        from interpkit.analyzer.plumbing.cache import file_key

        store = self._open()
        key = file_key(path, options, self._print) if store.enabled else None
        if key:
            store.put_many([(key, pickle.dumps(facts, protocol=pickle.HIGHEST_PROTOCOL))])


_DISK = _DiskFacts()
CACHE = FactsCache()


def facts_for(path: Path, options: FactsOptions = DEFAULT_OPTIONS) -> ElfFacts:
    """The file's own facts (no closure), built once per (path, size, mtime, options) while they
    stay among the most recently used; raises on unreadable or malformed files."""
    return CACHE.get(Path(path), options)
