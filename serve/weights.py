"""Map a torch.package archive's tensor storages from the file instead of copying them into the heap.

Runs inside each serving interpreter (serve/worker.py), so it depends on the standard
library and torch only. ``PackageImporter`` reads every storage record into a fresh heap buffer
(``PyTorchFileReader.get_storage_from_record``), so N interpreters hold N copies of the weights,
exactly like N processes. torch.package writes every record *stored* (uncompressed) and aligned
to 64 bytes inside the zip, so a record is a plain byte range of the file: this module maps the
whole archive once per importer with ``torch.UntypedStorage.from_file(shared=False)`` (a
MAP_PRIVATE file mapping, the same one ``torch.load(mmap=True)`` uses) and hands out slices of
it. The pages are the kernel's page cache of the file: every interpreter's libtorch copy maps
the same pages, so they are held once and their Pss is split between the mappings
(docs/facts.md, "file-backed weights"). A write to a weight copies only the written page, in
that interpreter only (copy-on-write); the file is never modified.

A record that is compressed, not of the expected size or not aligned for its dtype (an archive
rewritten by another zip tool) is copied as before; ``MappedRecords.summary()`` counts both.
The archive must stay as it is while it is served: a mapped page of a file truncated since
faults (SIGBUS), as with ``torch.load(mmap=True)``; replacing it by rename is safe.
"""
from __future__ import annotations

import os
import zipfile
from enum import StrEnum
from typing import Any


class Weights(StrEnum):
    """How a serving interpreter gets the archive's tensor storages."""

    MAPPED = "mapped"    # slices of one file mapping of the archive: the page cache's one copy, shared
    COPIED = "copied"    # torch.package's own reading: a heap copy per interpreter


class MappedRecords:
    """A ``PyTorchFileReader`` whose storage records are slices of one file mapping of the archive.

    Everything but ``get_storage_from_record`` is the wrapped reader's own (``__getattr__``).
    """

    def __init__(self, reader: Any, archive: str) -> None:
        self._reader = reader
        self._archive = os.path.realpath(archive)
        self._whole = None                     # the archive's mapping, made on the first record
        self._stored: dict[str, int] = {}      # record name (archive prefix dropped) -> size, stored members only
        with zipfile.ZipFile(self._archive) as archive_zip:
            for info in archive_zip.infolist():
                if info.compress_type == zipfile.ZIP_STORED:
                    # torch.package puts every member under one top-level folder.
                    self._stored[info.filename.partition("/")[2]] = info.file_size
        self.counts = {Weights.MAPPED: 0, Weights.COPIED: 0}
        self.bytes = {Weights.MAPPED: 0, Weights.COPIED: 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def get_storage_from_record(self, name: str, numel: int, dtype: Any) -> Any:
        import torch

        itemsize = torch.empty((), dtype=dtype).element_size()
        nbytes = numel * itemsize
        offset = self._reader.get_record_offset(name) if self._stored.get(name) == nbytes else None
        if offset is None or offset % max(itemsize, 1) != 0 or nbytes == 0:
            self.counts[Weights.COPIED] += 1
            self.bytes[Weights.COPIED] += nbytes
            return self._reader.get_storage_from_record(name, numel, dtype)
        if self._whole is None:
            # shared=False: MAP_PRIVATE, so a write stays in this interpreter and never reaches the file.
            self._whole = torch.UntypedStorage.from_file(self._archive, shared=False,
                                                         nbytes=os.path.getsize(self._archive))
        piece = self._whole[offset:offset + nbytes]   # a view of the mapping, not a copy
        self.counts[Weights.MAPPED] += 1
        self.bytes[Weights.MAPPED] += nbytes
        return torch.empty(0, dtype=dtype).set_(piece, 0, (numel,))

    def summary(self) -> dict:
        return {"mapped_storages": self.counts[Weights.MAPPED], "mapped_bytes": self.bytes[Weights.MAPPED],
                "copied_storages": self.counts[Weights.COPIED], "copied_bytes": self.bytes[Weights.COPIED]}


def file_backed_bytes(tensors: list[Any], path: str) -> dict:
    """How many bytes of ``tensors``' storages lie in a mapping of file ``path`` (/proc/self/maps)
    and how many elsewhere (the heap): the kernel's view, not this module's bookkeeping."""
    target = os.path.realpath(path)
    ranges: list[tuple[int, int]] = []
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].rstrip("\n") == target:
                low, _, high = parts[0].partition("-")
                ranges.append((int(low, 16), int(high, 16)))
    seen: set[int] = set()
    inside = outside = 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        start, size = storage.data_ptr(), storage.nbytes()
        if start in seen or size == 0:
            continue
        seen.add(start)
        if any(low <= start and start + size <= high for low, high in ranges):
            inside += size
        else:
            outside += size
    return {"file_backed_bytes": inside, "heap_bytes": outside}
