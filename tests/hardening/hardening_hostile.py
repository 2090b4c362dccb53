"""Hostile inputs made at test time: corrupted ELF files, hand-written foreign ELF files, lying zips.

Nothing here is committed as a binary; every corrupt file is derived from a real fixture build
(or written field by field by `write_elf`) inside the test's tmp_path.
"""
from __future__ import annotations

import base64
import hashlib
import os
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# ELF64 header field offsets (elf.h, Elf64_Ehdr).
E_MACHINE, E_PHOFF, E_SHOFF = 18, 32, 40
E_PHENTSIZE, E_PHNUM, E_SHENTSIZE, E_SHNUM, E_SHSTRNDX = 54, 56, 58, 60, 62
SHDR64_SIZE = 64
# Elf64_Shdr field offsets.
SH_NAME, SH_TYPE, SH_OFFSET, SH_SIZE, SH_LINK, SH_ENTSIZE = 0, 4, 24, 32, 40, 56


# --------------------------------------------------------------------------- running the real CLI

def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m interpkit ARGS` in a child, as a user would run it."""
    env = dict(os.environ)
    env.pop("INTERPKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "interpkit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env=env)


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "internal error" not in proc.stderr, proc.stderr[-3000:]


# --------------------------------------------------------------------------- ELF surgery on real builds

def set_u16(data: bytearray, offset: int, value: int) -> None:
    data[offset:offset + 2] = struct.pack("<H", value)


def set_u32(data: bytearray, offset: int, value: int) -> None:
    data[offset:offset + 4] = struct.pack("<I", value)


def set_u64(data: bytearray, offset: int, value: int) -> None:
    data[offset:offset + 8] = struct.pack("<Q", value)


def section_headers(data: bytes) -> list[int]:
    """File offsets of each section header of a little-endian ELF64 file."""
    shoff = struct.unpack_from("<Q", data, E_SHOFF)[0]
    shnum = struct.unpack_from("<H", data, E_SHNUM)[0]
    return [shoff + i * SHDR64_SIZE for i in range(shnum)]


def section_named(data: bytes, wanted_type: int) -> int:
    """Header offset of the first section of wanted_type (e.g. 11 = SHT_DYNSYM)."""
    for header in section_headers(data):
        if struct.unpack_from("<I", data, header + SH_TYPE)[0] == wanted_type:
            return header
    raise LookupError(f"no section of type {wanted_type}")


def corruptions(original: bytes) -> dict[str, bytes]:
    """Named corruptions of one real little-endian ELF64 build, each aimed at one header field."""
    out: dict[str, bytes] = {}

    def variant(name: str, edit) -> None:
        data = bytearray(original)
        edit(data)
        out[name] = bytes(data)

    huge = 0x7FFF_FFFF_FFFF_FFF0
    variant("e_shnum_huge", lambda d: set_u16(d, E_SHNUM, 0xFFFE))
    variant("e_shnum_zero_with_shoff", lambda d: set_u16(d, E_SHNUM, 0))
    variant("e_shoff_past_end", lambda d: set_u64(d, E_SHOFF, len(original) * 8))
    variant("e_shoff_huge", lambda d: set_u64(d, E_SHOFF, huge))
    variant("e_phoff_past_end", lambda d: set_u64(d, E_PHOFF, len(original) * 8))
    variant("e_phoff_huge", lambda d: set_u64(d, E_PHOFF, huge))
    variant("e_phnum_huge", lambda d: set_u16(d, E_PHNUM, 0xFFFF))
    variant("e_shentsize_zero", lambda d: set_u16(d, E_SHENTSIZE, 0))
    variant("e_shentsize_huge", lambda d: set_u16(d, E_SHENTSIZE, 0xFFFF))
    variant("e_phentsize_tiny", lambda d: set_u16(d, E_PHENTSIZE, 3))
    # Found by fuzz/fuzz_elf.py: entry size 0 made pyelftools parse one header 55k times (13 s).
    variant("e_phentsize_zero_phnum_huge", lambda d: (set_u16(d, E_PHENTSIZE, 0), set_u16(d, E_PHNUM, 55296)))
    variant("e_shstrndx_out_of_range", lambda d: set_u16(d, E_SHSTRNDX, 0xFFF0))
    variant("ei_class_invalid", lambda d: d.__setitem__(4, 7))
    variant("ei_data_invalid", lambda d: d.__setitem__(5, 9))
    variant("ei_class_32_on_64_body", lambda d: d.__setitem__(4, 1))
    variant("ei_data_big_on_little_body", lambda d: d.__setitem__(5, 2))
    variant("e_machine_arm", lambda d: set_u16(d, E_MACHINE, 40))
    variant("e_machine_unknown", lambda d: set_u16(d, E_MACHINE, 0xBEEF))

    dynsym = section_named(original, 11)
    variant("dynsym_sh_link_out_of_range", lambda d: set_u32(d, dynsym + SH_LINK, 0xFFFF))
    variant("dynsym_sh_link_to_self", lambda d: set_u32(d, dynsym + SH_LINK,
                                                         section_headers(original).index(dynsym)))
    variant("dynsym_sh_size_huge", lambda d: set_u64(d, dynsym + SH_SIZE, huge))
    variant("dynsym_sh_offset_past_end", lambda d: set_u64(d, dynsym + SH_OFFSET, len(original) * 8))
    variant("dynsym_sh_entsize_zero", lambda d: set_u64(d, dynsym + SH_ENTSIZE, 0))
    for index, header in enumerate(section_headers(original)):
        variant(f"section{index}_sh_name_out_of_range", lambda d, h=header: set_u32(d, h + SH_NAME, 0xFFFF_FFF0))
    dynamic = section_named(original, 6)
    variant("dynamic_sh_size_huge", lambda d: set_u64(d, dynamic + SH_SIZE, huge))
    variant("dynamic_sh_entsize_zero", lambda d: set_u64(d, dynamic + SH_ENTSIZE, 0))
    variant("dynamic_sh_link_out_of_range", lambda d: set_u32(d, dynamic + SH_LINK, 0xFFFF))
    symtab = section_named(original, 2)
    variant("symtab_sh_link_out_of_range", lambda d: set_u32(d, symtab + SH_LINK, 0xFFFF))
    variant("symtab_sh_size_huge", lambda d: set_u64(d, symtab + SH_SIZE, huge))
    rela = section_named(original, 4)
    variant("rela_sh_size_huge", lambda d: set_u64(d, rela + SH_SIZE, huge))
    variant("rela_sh_offset_past_end", lambda d: set_u64(d, rela + SH_OFFSET, len(original) * 8))
    return out


def truncation_points(size: int, count: int = 40) -> list[int]:
    """Offsets to cut a file at: inside the header, every few bytes early on, then spread evenly."""
    points = {0, 1, 4, 5, 16, 18, 24, 52, 63, 64, 65, 120, 128, 200, 256, 512, 1024}
    points.update(size * k // count for k in range(1, count))
    points.update({size - 1, size - 8, size - 64})
    return sorted(p for p in points if 0 <= p < size)


# --------------------------------------------------------------------------- foreign ELF files, field by field

def write_elf(*, elfclass: int = 64, little: bool = True, machine: int = 62,
              symbols: tuple[str, ...] = ("PyInit_foreign",)) -> bytes:
    """A small but well-formed ET_DYN file: null, .dynstr, .dynsym, .shstrtab sections and a PT_LOAD.

    Written by hand so that big-endian and non-x86 objects can be made without a cross compiler.
    """
    e = "<" if little else ">"
    is64 = elfclass == 64
    ehsize, phsize, shsize = (64, 56, 64) if is64 else (52, 32, 40)
    symsize = 24 if is64 else 16

    dynstr = b"\0" + b"".join(s.encode() + b"\0" for s in symbols)
    name_offsets, cursor = [], 1
    for s in symbols:
        name_offsets.append(cursor)
        cursor += len(s) + 1
    dynsym = b"\0" * symsize
    for offset in name_offsets:  # global functions defined in section 1 (the string table serves as "text")
        info, other, shndx, value, size = (1 << 4) | 2, 0, 1, 0x1000, 16
        if is64:
            dynsym += struct.pack(e + "IBBHQQ", offset, info, other, shndx, value, size)
        else:
            dynsym += struct.pack(e + "IIIBBH", offset, value, size, info, other, shndx)
    shstrtab = b"\0.dynstr\0.dynsym\0.shstrtab\0"

    body_start = ehsize + phsize
    dynstr_off = body_start
    dynsym_off = dynstr_off + len(dynstr)
    shstr_off = dynsym_off + len(dynsym)
    shoff = (shstr_off + len(shstrtab) + 7) & ~7
    total = shoff + 4 * shsize

    def shdr(name, stype, offset, size, link=0, entsize=0, flags=0, addr=0):
        if is64:
            return struct.pack(e + "IIQQQQIIQQ", name, stype, flags, addr, offset, size, link, 0, 1, entsize)
        return struct.pack(e + "IIIIIIIIII", name, stype, flags, addr, offset, size, link, 0, 1, entsize)

    ident = b"\x7fELF" + bytes([1 if not is64 else 2, 1 if little else 2, 1, 0]) + b"\0" * 8
    if is64:
        header = ident + struct.pack(e + "HHIQQQIHHHHHH", 3, machine, 1, 0, ehsize, shoff, 0,
                                     ehsize, phsize, 1, shsize, 4, 3)
        phdr = struct.pack(e + "IIQQQQQQ", 1, 5, 0, 0, 0, total, total, 0x1000)
    else:
        header = ident + struct.pack(e + "HHIIIIIHHHHHH", 3, machine, 1, 0, ehsize, shoff, 0,
                                     ehsize, phsize, 1, shsize, 4, 3)
        phdr = struct.pack(e + "IIIIIIII", 1, 0, 0, 0, total, total, 5, 0x1000)
    out = bytearray(header + phdr + dynstr + dynsym + shstrtab)
    out += b"\0" * (shoff - len(out))
    out += shdr(0, 0, 0, 0)
    out += shdr(1, 3, dynstr_off, len(dynstr), flags=2)
    out += shdr(9, 11, dynsym_off, len(dynsym), link=1, entsize=symsize, flags=2)
    out += shdr(17, 3, shstr_off, len(shstrtab))
    assert len(out) == total
    return bytes(out)


# --------------------------------------------------------------------------- hostile zips

DIST = "evil-0.1.dist-info"
WHEEL_NAME = "evil-0.1-cp311-cp311-linux_x86_64.whl"


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_members(extra: list[tuple[str, bytes]] = (), *, record: bool | str = True) -> list[tuple[str, bytes]]:
    """A small wheel's members plus `extra`; RECORD lists everything honestly unless told otherwise."""
    members = [("evil/__init__.py", b""),
               (f"{DIST}/METADATA", b"Metadata-Version: 2.1\nName: evil\nVersion: 0.1\n"),
               (f"{DIST}/WHEEL", b"Wheel-Version: 1.0\nGenerator: interpkit-tests\nRoot-Is-Purelib: false\n"
                                 b"Tag: cp311-cp311-linux_x86_64\n"),
               *extra]
    if record is True:
        rows = "".join(f"{name},{record_hash(data)},{len(data)}\n" for name, data in members)
        members.append((f"{DIST}/RECORD", (rows + f"{DIST}/RECORD,,\n").encode()))
    elif isinstance(record, str):
        members.append((f"{DIST}/RECORD", record.encode()))
    return members


def zip_with_members(path: Path, members: list[tuple[str, bytes]], *, symlink: set[str] = frozenset()) -> Path:
    """A zip holding members exactly as named (zipfile would refuse nothing we ask for here)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": exactly what some tests want
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o120777 if name in symlink else 0o100644
            info.external_attr = mode << 16
            info.create_system = 3
            zf.writestr(info, data)
    return path


def lying_size_zip(path: Path, name: str, actual: bytes, declared: int, *, extra: list[tuple[str, bytes]] = ()) -> Path:
    """A zip whose member `name` declares `declared` bytes but inflates to len(actual) bytes.

    Python's zipfile writes honest sizes, so the member is written honestly and then the size fields
    of its local header and central-directory entry are rewritten in place.
    """
    zip_with_members(path, [*extra, (name, actual)])
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    # Local file header: signature PK\3\4, uncompressed size at +22, name length at +26.
    local = data.find(b"PK\x03\x04" + b"", 0)
    while local != -1:
        name_len = struct.unpack_from("<H", data, local + 26)[0]
        if bytes(data[local + 30: local + 30 + name_len]) == encoded:
            struct.pack_into("<I", data, local + 22, declared)
            break
        local = data.find(b"PK\x03\x04", local + 4)
    # Central directory entry: signature PK\1\2, uncompressed size at +24, name length at +28.
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46: central + 46 + name_len]) == encoded:
            struct.pack_into("<I", data, central + 24, declared)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    return path


def deflate_ratio_payload(size: int) -> bytes:
    """`size` zero bytes: they deflate about 1000:1, the raw material of a zip bomb."""
    return bytes(size)


def crc_of(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under folder (not following links) with its size and mtime: what a run may not touch."""
    out = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out
