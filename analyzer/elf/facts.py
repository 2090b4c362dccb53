"""ElfFacts: everything rules may read about one ELF file, built once and cached by (path, size, mtime)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from interpkit.analyzer.elf.image import (DF_STATIC_TLS, DT_FLAGS, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME,
                                ElfImage)
from interpkit.analyzer.elf.modinit import InitInfo, read_module_inits
from interpkit.analyzer.elf.symbols import LINKER_SYMBOLS, STB_GLOBAL, STT_OBJECT, Symbols

_LIBPYTHON_RE = re.compile(r"^libpython(\d+)\.(\d+)[a-z]*\.so")
_EXT_TAG_RE = re.compile(r"\.cpython-(\d)(\d+)[a-z]*-")

# Marker strings each binding generator leaves in .rodata (checked in this order: a PyO3 or
# nanobind module may also mention pybind11 in a message, never the other way round). Each
# pattern comes with the fixed strings its matches start with: bytes.find skims .rodata for
# those an order of magnitude faster than the regex engine walks it (18 MB in libtorch_cpu.so),
# and no match can start before the first of them.
_GENERATOR_MARKERS: tuple[tuple[str, re.Pattern[bytes], tuple[bytes, ...]], ...] = (
    ("pyo3", re.compile(rb"pyo3-(\d+\.\d+\.\d+)|PyO3 modules"), (b"pyo3-", b"PyO3 modules")),
    ("nanobind", re.compile(rb"__nb_internals|nanobind"), (b"__nb_internals", b"nanobind")),
    ("pybind11", re.compile(rb"__pybind11_internals_v(\d+)"), (b"__pybind11_internals_v",)),
    ("cython", re.compile(rb"_cython_(\d+_\d+_\d+[a-z0-9]*)|cython_runtime|__pyx_"),
     (b"_cython_", b"cython_runtime", b"__pyx_")),
    ("cffi", re.compile(rb"_cffi_backend"), (b"_cffi_backend",)),
)
_RODATA_SCAN_LIMIT = 256 * 1024 * 1024


@dataclass
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
    # Filled in by analyze.py once the closure is resolved: soname -> path (None: not found).
    closure: dict[str, str | None] = field(default_factory=dict)

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
        if self.soname:
            out["soname"] = self.soname
        if self.rpath:
            out["rpath"] = list(self.rpath)
        if self.runpath:
            out["runpath"] = list(self.runpath)
        if self.closure:
            out["closure"] = dict(self.closure)
        return out


def _split_paths(values: list) -> tuple[str, ...]:
    return tuple(p for v in values for p in str(v).split(":") if p)


def _detect_generator(image: ElfImage, symbols: Symbols, is_extension: bool) -> tuple[str | None, str | None]:
    rodata = image.section_by_name(".rodata")
    blob = image.section_bytes(rodata) if rodata is not None and rodata.size <= _RODATA_SCAN_LIMIT else b""
    for name, pattern, prefixes in _GENERATOR_MARKERS:
        starts = [at for at in map(blob.find, prefixes) if at >= 0]
        if not starts:
            continue
        match = pattern.search(blob, min(starts))
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


def build_facts(path: Path) -> ElfFacts:
    stat = path.stat()
    with ElfImage.open(path) as image:
        symbols = Symbols.read(image)
        imports = frozenset(symbols.imports())
        init = read_module_inits(image, symbols, imports)
        is_extension = bool(init.inits)
        # Straight from the columns: a Symbol object per export costs 0.4 s over torch's libraries.
        exports, weak = [], 0
        names, infos = symbols.dynsym.names, symbols.dynsym.infos
        for index in symbols.export_indices():
            if infos[index] >> 4 == STB_GLOBAL:
                if names[index] not in LINKER_SYMBOLS:
                    exports.append(names[index])
            else:
                weak += 1
        flags = sum(v for v in image.dynamic_values(DT_FLAGS) if isinstance(v, int))
        tls = image.tls_segment or (0, 0)
        generator, version = _detect_generator(image, symbols, is_extension)
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
            imports=imports, exports=tuple(sorted(set(exports))), weak_export_count=weak,
            gnu_unique=tuple(sorted({s.name for s in symbols.gnu_unique()})),
            init=init, generator=generator, generator_version=version,
            static_type_objects=static_types,
        )


_CACHE: dict[tuple[str, int, int], ElfFacts] = {}


def facts_for(path: Path) -> ElfFacts:
    """Facts for path, read once per (path, size, mtime); raises on unreadable or malformed files."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _CACHE.get(key)
    if cached is None:
        cached = _CACHE[key] = build_facts(path)
    return cached
