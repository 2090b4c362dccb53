"""Fixed byte strings found in a large section without holding the GIL, so a second core can
skim it while this one reads the symbol tables.

`bytes.find` and `mmap.find` hold the GIL for the whole pass (18 MB of .rodata and 76 MB of
.strtab in libtorch_cpu.so), so a thread running them only takes turns with the main one. libc's
`memmem`, called through ctypes, releases it, and skims about twice as fast as CPython's
two-way search. Every answer is the one `haystack.find(needle, start, end)` gives; where ctypes,
memmem or the buffer's address is unavailable, that is what runs.
"""
from __future__ import annotations

# Sections smaller than this are searched in the calling thread: starting a thread costs more.
BACKGROUND_BYTES = 1 << 20

_NOT_LOADED = object()
_libc = _NOT_LOADED


def _load():
    """(memmem, PyObject_GetBuffer, PyBuffer_Release, Py_buffer type) or None."""
    global _libc
    if _libc is not _NOT_LOADED:
        return _libc
    try:
        import ctypes

        class PyBuffer(ctypes.Structure):   # Include/pybuffer.h, stable since 3.0
            _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                        ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                        ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                        ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]

        memmem = ctypes.CDLL(None).memmem   # a CDLL call releases the GIL
        memmem.restype = ctypes.c_void_p
        memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
        get_buffer = ctypes.pythonapi.PyObject_GetBuffer   # pythonapi calls keep the GIL, as these need
        get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int]
        get_buffer.restype = ctypes.c_int
        release = ctypes.pythonapi.PyBuffer_Release
        release.argtypes = [ctypes.POINTER(PyBuffer)]
        release.restype = None
        _libc = (memmem, get_buffer, release, PyBuffer, ctypes.byref)
    except Exception:  # noqa: BLE001 - no ctypes, no memmem, no pythonapi: bytes.find it is
        _libc = None
    return _libc


def fast() -> bool:
    """Whether Finder searches with memmem here (otherwise with the buffer's own find)."""
    return _load() is not None


class Finder:
    """`find` over one buffer (bytes or an mmap), pinned while the Finder is open: the memory
    cannot be unmapped under a search, and ElfImage.close leaves the mapping to the last user."""

    def __init__(self, haystack) -> None:
        self._haystack = haystack
        self._view = None
        self._address = 0
        libc = _load()
        if libc is not None and len(haystack):
            memmem, get_buffer, _release, buffer_type, byref = libc
            view = buffer_type()
            try:
                ok = get_buffer(haystack, byref(view), 0) == 0   # PyBUF_SIMPLE
            except Exception:  # noqa: BLE001 - not a buffer ctypes can pin: plain find
                ok = False
            if ok:
                self._view, self._address, self._memmem = view, view.buf, memmem

    def close(self) -> None:
        view, self._view = self._view, None
        if view is not None:
            _libc[2](_libc[4](view))

    def __enter__(self) -> "Finder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def find(self, needle: bytes, start: int, end: int) -> int:
        """haystack.find(needle, start, end) for 0 <= start, a non-empty needle."""
        if self._view is None:
            return self._haystack.find(needle, start, end)
        end = min(end, self._view.len)
        if start < 0 or not needle or end - start < len(needle):
            return self._haystack.find(needle, start, end)
        hit = self._memmem(self._address + start, end - start, needle, len(needle))
        return -1 if hit is None else hit - self._address


def first_positions(haystack, start: int, end: int, needles) -> dict[bytes, int]:
    """Where each needle first occurs in haystack[start:end] (-1: nowhere)."""
    with Finder(haystack) as finder:
        return {needle: finder.find(needle, start, end) for needle in needles}
