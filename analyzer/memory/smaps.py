"""Read /proc/<pid>/smaps and smaps_rollup, and attribute each mapping to the interpreter that owns it.

RSS counts a file page once per mapping, so one file mapped in N namespaces counts N times
(docs/facts.md fact 6); Pss divides each page among its mappers and is what adds up. Here every
mapping keeps its Rss, Pss, Private_Clean, Private_Dirty, Shared_* and Anonymous, and an
attribution splits the process into: the objects loaded by each interpreter (each namespace
maps its own copy of a file at its own address, so a file mapped N times in N namespaces
gives N distinct ranges, told apart by the load base from that namespace's link map), other
file mappings, and anonymous memory (heaps, thread stacks) that no object owns.
"""
from __future__ import annotations

import bisect
import functools
import os
import struct
from dataclasses import dataclass, field, fields
from pathlib import Path

from interpkit.analyzer.elf.image import PT_LOAD, ElfImage

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# smaps field name -> MemoryTotals attribute (values in kB in the file, bytes here).
_FIELDS = {
    "Rss": "rss", "Pss": "pss", "Shared_Clean": "shared_clean", "Shared_Dirty": "shared_dirty",
    "Private_Clean": "private_clean", "Private_Dirty": "private_dirty", "Anonymous": "anonymous",
    "Swap": "swap",
}


@dataclass(slots=True)
class MemoryTotals:
    """Sums over some mappings, in bytes."""

    rss: int = 0
    pss: int = 0
    shared_clean: int = 0
    shared_dirty: int = 0
    private_clean: int = 0
    private_dirty: int = 0
    anonymous: int = 0
    swap: int = 0

    @property
    def private(self) -> int:
        return self.private_clean + self.private_dirty

    def add(self, other: "MemoryTotals") -> "MemoryTotals":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def minus(self, other: "MemoryTotals") -> "MemoryTotals":
        return MemoryTotals(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def as_dict(self) -> dict[str, int]:
        return {f"{f.name}_bytes": getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class Mapping:
    """One line of /proc/<pid>/maps with its smaps counters."""

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str | None          # file path, "[heap]", "[stack]", "[vdso]"...; None for unnamed anonymous
    totals: MemoryTotals = field(default_factory=MemoryTotals)

    @property
    def is_file(self) -> bool:
        return self.inode != 0 and self.path is not None and not self.path.startswith("[")

    @property
    def is_anonymous(self) -> bool:
        return self.inode == 0 and (self.path is None or self.path in ("[heap]", "[stack]") or self.path.startswith("[anon"))


def _parse_header(line: str) -> Mapping | None:
    parts = line.split(None, 5)
    if len(parts) < 5 or "-" not in parts[0]:
        return None
    try:
        lo, hi = parts[0].split("-")
        start, end = int(lo, 16), int(hi, 16)
        offset, inode = int(parts[2], 16), int(parts[4])
    except ValueError:
        return None
    path = parts[5].strip() if len(parts) == 6 else None
    if path and path.endswith(" (deleted)"):
        path = path[: -len(" (deleted)")]
    return Mapping(start, end, parts[1], offset, inode, path or None)


def parse_smaps(text: str) -> list[Mapping]:
    """Every mapping in an smaps text, in address order."""
    mappings: list[Mapping] = []
    current: Mapping | None = None
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key in _FIELDS and current is not None:
            value = rest.split()
            if value:
                setattr(current.totals, _FIELDS[key], int(value[0]) * 1024)
            continue
        if sep and (key[:1].isupper() and " " not in key):
            continue  # a counter we do not keep (Size, Referenced, VmFlags, ...)
        header = _parse_header(line)
        if header is not None:
            current = header
            mappings.append(current)
    return mappings


def read_smaps(pid: int | str = "self") -> list[Mapping]:
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as fh:
        return parse_smaps(fh.read())


def parse_rollup(text: str) -> MemoryTotals:
    totals = MemoryTotals()
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key in _FIELDS and rest.split():
            setattr(totals, _FIELDS[key], int(rest.split()[0]) * 1024)
    return totals


def read_rollup(pid: int | str = "self") -> MemoryTotals:
    """Whole-process totals; falls back to summing smaps on kernels without smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as fh:
            return parse_rollup(fh.read())
    except FileNotFoundError:
        return total_of(read_smaps(pid))


def total_of(mappings: list[Mapping]) -> MemoryTotals:
    totals = MemoryTotals()
    for mapping in mappings:
        totals.add(mapping.totals)
    return totals


# ---------------------------------------------------------------------------- attribution


@dataclass(frozen=True, slots=True)
class LoadedObject:
    """One entry of an interpreter's link map: which file, loaded at which bias."""

    interpreter: int      # -1: the host (base namespace)
    path: str
    base: int


@functools.lru_cache(maxsize=1024)
def _load_span(path: str) -> tuple[int, int] | None:
    """[first page, end of last page) of an ELF file's PT_LOAD segments, relative to its load bias."""
    try:
        with ElfImage.open(Path(path)) as image:
            loads = [(vaddr, memsz) for ptype, _o, vaddr, _f, memsz, _fl in image.segments if ptype == PT_LOAD and memsz]
    except Exception:
        return None
    if not loads:
        return None
    low = min(v for v, _ in loads)
    high = max(v + m for v, m in loads)
    return low - low % PAGE_SIZE, -(-high // PAGE_SIZE) * PAGE_SIZE


@dataclass(frozen=True, slots=True)
class AddressRange:
    start: int
    end: int
    owner: LoadedObject


def object_ranges(objects: list[LoadedObject]) -> list[AddressRange]:
    """Address ranges of loaded objects, from link-map bases and each file's PT_LOAD span.

    The span covers the object's zero-filled .bss mapping too, which smaps shows as an
    unnamed anonymous mapping right after the file's last mapping.
    """
    ranges = []
    for obj in objects:
        if not obj.path:
            continue
        span = _load_span(obj.path)
        if span is None:
            continue
        ranges.append(AddressRange(obj.base + span[0], obj.base + span[1], obj))
    ranges.sort(key=lambda r: r.start)
    return ranges


@dataclass
class Attribution:
    """A process's mappings split by owner."""

    by_interpreter: dict[int, MemoryTotals]                  # objects each interpreter's namespace loaded
    by_object: dict[tuple[int, str], MemoryTotals]          # (interpreter, path) -> totals
    host_objects: MemoryTotals                                # objects of the base namespace (interpreter -1)
    other_files: MemoryTotals                                 # file mappings no link map names
    anonymous: MemoryTotals                                   # heaps, arenas, thread stacks: no object owns them
    special: MemoryTotals                                     # [vdso], [vvar], [vsyscall]
    total: MemoryTotals

    def as_dict(self) -> dict:
        return {
            "by_interpreter": {str(k): v.as_dict() for k, v in sorted(self.by_interpreter.items())},
            "host_objects": self.host_objects.as_dict(),
            "other_files": self.other_files.as_dict(),
            "anonymous": self.anonymous.as_dict(),
            "special": self.special.as_dict(),
            "total": self.total.as_dict(),
        }


def attribute(mappings: list[Mapping], objects: list[LoadedObject], *, guess_host: bool = True,
              pid: int | str = "self") -> Attribution:
    """Split mappings among the interpreters whose link maps hold the objects mapped there.

    An object listed at the same address by several namespaces (the dynamic loader: there
    is one for all) is shared and counted with the host. With ``guess_host``, files mapped
    outside every listed range are the host's own objects (the base namespace maps each
    file once, so a file's offset-0 mapping marks its base).

    The kernel merges an object's .bss mapping with an anonymous mapping placed right after
    it (same permissions, adjacent), so one smaps entry can hold both an object's .bss and
    heap. Such an entry is split at the object's end by counting its resident pages in
    /proc/``pid``/pagemap, which must be read while the mappings are still as listed.
    """
    ranges = _owned_ranges(objects)
    if guess_host:
        ranges = _owned_ranges(objects + _unlisted_objects(mappings, ranges))
    starts = [r.start for r in ranges]
    result = Attribution({}, {}, MemoryTotals(), MemoryTotals(), MemoryTotals(), MemoryTotals(), MemoryTotals())
    for obj in objects:
        if obj.interpreter >= 0:
            result.by_interpreter.setdefault(obj.interpreter, MemoryTotals())
    for mapping in mappings:
        result.total.add(mapping.totals)
        owner = _owner_of(mapping, ranges, starts)
        if owner is not None and not mapping.is_file:
            index = bisect.bisect_right(starts, mapping.start) - 1
            if mapping.end > ranges[index].end:
                inside = _object_part(mapping, ranges[index].end, pid)
                result.anonymous.add(mapping.totals.minus(inside))
                mapping = Mapping(mapping.start, ranges[index].end, mapping.perms, mapping.offset, mapping.inode,
                                  mapping.path, inside)
        if owner is not None:
            if owner.interpreter < 0:
                result.host_objects.add(mapping.totals)
            else:
                result.by_interpreter.setdefault(owner.interpreter, MemoryTotals()).add(mapping.totals)
                result.by_object.setdefault((owner.interpreter, owner.path), MemoryTotals()).add(mapping.totals)
        elif mapping.is_file:
            result.other_files.add(mapping.totals)
        elif mapping.is_anonymous:
            result.anonymous.add(mapping.totals)
        else:
            result.special.add(mapping.totals)
    return result


def _object_part(mapping: Mapping, boundary: int, pid: int | str) -> MemoryTotals:
    """The share of an anonymous mapping below ``boundary``: its resident pages there, all private."""
    resident = _resident_bytes(pid, mapping.start, boundary)
    if resident is None:  # no pagemap (another user's process): assume the object's part is resident
        resident = boundary - mapping.start
    totals = mapping.totals
    return MemoryTotals(rss=min(resident, totals.rss), pss=min(resident, totals.pss),
                        private_dirty=min(resident, totals.private_dirty),
                        anonymous=min(resident, totals.anonymous))


def _resident_bytes(pid: int | str, start: int, end: int) -> int | None:
    """Bytes of [start, end) that are in memory or swapped out, from /proc/<pid>/pagemap (bits 63, 62)."""
    try:
        with open(f"/proc/{pid}/pagemap", "rb") as fh:
            fh.seek(start // PAGE_SIZE * 8)
            data = fh.read((end - start) // PAGE_SIZE * 8)
    except OSError:
        return None
    present = sum(1 for (entry,) in struct.iter_unpack("<Q", data[: len(data) - len(data) % 8]) if entry >> 62)
    return present * PAGE_SIZE


def _owned_ranges(objects: list[LoadedObject]) -> list[AddressRange]:
    by_start: dict[int, AddressRange] = {}
    for item in object_ranges(objects):
        previous = by_start.get(item.start)
        if previous is not None and previous.owner.interpreter != item.owner.interpreter:
            shared = LoadedObject(-1, item.owner.path, item.owner.base)
            item = AddressRange(item.start, max(item.end, previous.end), shared)
        by_start[item.start] = item
    return sorted(by_start.values(), key=lambda r: r.start)


def _owner_of(mapping: Mapping, ranges: list[AddressRange], starts: list[int]) -> LoadedObject | None:
    index = bisect.bisect_right(starts, mapping.start) - 1
    if index < 0 or mapping.start >= ranges[index].end:
        return None
    owner = ranges[index].owner
    if mapping.is_file and not _same_file(mapping.path, owner.path):
        return None  # something else mapped into a hole of the object's span
    return owner


def _unlisted_objects(mappings: list[Mapping], ranges: list[AddressRange]) -> list[LoadedObject]:
    starts = [r.start for r in ranges]
    found = []
    for mapping in mappings:
        if mapping.is_file and mapping.offset == 0 and _owner_of(mapping, ranges, starts) is None:
            span = _load_span(mapping.path)
            if span is not None:
                found.append(LoadedObject(-1, mapping.path, mapping.start - span[0]))
    return found


@functools.lru_cache(maxsize=4096)
def _same_file(mapped: str | None, listed: str) -> bool:
    if mapped is None:
        return False
    if mapped == listed:
        return True
    try:
        return os.path.samefile(mapped, listed)
    except OSError:
        return False
