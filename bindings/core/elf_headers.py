"""What an ELF file's headers say (load segments, a program interpreter, section names,
build-id, debug link), read with struct: pyelftools parses every section's contents to
name them, which is most of the time of a report over a program's 40 libraries. None for
anything this reader does not take whole; ElfImage then asks pyelftools, which says what
is wrong."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

_PT_LOAD, _PT_INTERP, _SHT_NOTE, _NT_GNU_BUILD_ID = 1, 3, 7, 3
_SHN_XINDEX = 0xFFFF
_MAX_NOTES = 1 << 20  # bytes of SHT_NOTE sections read for the build-id
_MAX_LINK = 4096  # bytes of .gnu_debuglink (a file name and a CRC)


class Section(NamedTuple):
    """A section header's fields that the readers of its contents use."""

    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclass(frozen=True)
class ElfHeaders:
    """PT_LOAD segments as (offset, vaddr, filesz), whether it names a program
    interpreter (a dynamic loader: PT_INTERP), the sections' names, the build-id (hex),
    the contents of .gnu_debuglink, if any, its class (32 or 64 bits) and its section
    headers in their order."""

    little_endian: bool
    segments: list[tuple[int, int, int]]
    interpreter: bool
    sections: set[str]
    build_id: str | None
    debuglink: bytes | None
    bits: int
    section_headers: tuple[Section, ...]


@dataclass(frozen=True)
class _Layout:
    header: str  # e_phoff, e_shoff ... e_shstrndx, from byte 28 (32-bit) or 32 (64-bit)
    program: str  # a program header
    load: tuple[int, int, int]  # where p_offset, p_vaddr, p_filesz are in it
    section: str  # a section header: name, type, flags, addr, offset, size, link, ...


_LAYOUTS = {
    1: _Layout("II4xHHHHHH", "IIIIIIII", (1, 2, 4), "IIIIIIIIII"),
    2: _Layout("QQ4xHHHHHH", "IIQQQQQQ", (2, 3, 5), "IIQQQQIIQQ"),
}


def read_headers(f: BinaryIO) -> ElfHeaders | None:
    """The headers of the ELF file `f` (at any position); None where they are damaged,
    cut short or of a form this reader does not take."""
    try:
        return _read(f)
    except (struct.error, ValueError, OSError, IndexError):
        return None


def _read(f: BinaryIO) -> ElfHeaders | None:
    f.seek(0)
    ident = f.read(64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF" or ident[4] not in _LAYOUTS:
        return None
    order = {1: "<", 2: ">"}.get(ident[5])
    if order is None:
        return None
    layout = _LAYOUTS[ident[4]]
    start = 28 if ident[4] == 1 else 32
    phoff, shoff, _, phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(
        order + layout.header, ident, start
    )
    program = struct.Struct(order + layout.program)
    section = struct.Struct(order + layout.section)
    if (phnum and phentsize < program.size) or (shoff and shentsize < section.size):
        return None

    segments, interpreter = [], False
    table = _at(f, phoff, phnum * phentsize)
    for i in range(phnum):
        fields = program.unpack_from(table, i * phentsize)
        if fields[0] == _PT_LOAD:
            segments.append(tuple(fields[k] for k in layout.load))
        interpreter |= fields[0] == _PT_INTERP

    headers = []
    if shoff:
        first = section.unpack(_at(f, shoff, section.size))
        shnum = shnum or first[5]  # extended numbering: the count in section 0's size
        shstrndx = first[6] if shstrndx == _SHN_XINDEX else shstrndx
        table = _at(f, shoff, shnum * shentsize)
        headers = [section.unpack_from(table, i * shentsize) for i in range(shnum)]
    names: dict[str, tuple[int, ...]] = {}
    sections = []
    if headers:
        strings = _at(f, headers[shstrndx][4], headers[shstrndx][5])
        for h in headers:
            end = strings.index(b"\0", h[0])
            name = strings[h[0] : end].decode("utf-8", "surrogateescape")
            names.setdefault(name, h)
            sections.append(Section(name, h[1], h[3], h[4], h[5], h[6], h[9]))
    build_id = None
    for h in headers:
        if h[1] == _SHT_NOTE and build_id is None:
            build_id = _build_id(_at(f, h[4], min(h[5], _MAX_NOTES)), order)
    link = names.get(".gnu_debuglink")
    debuglink = _at(f, link[4], min(link[5], _MAX_LINK)) if link else None
    return ElfHeaders(
        order == "<",
        segments,
        interpreter,
        set(names),
        build_id,
        debuglink,
        32 if ident[4] == 1 else 64,
        tuple(sections),
    )


def _at(f: BinaryIO, offset: int, size: int) -> bytes:
    """`size` bytes at `offset`; ValueError where the file ends before."""
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("cut short")
    return data


def _build_id(notes: bytes, order: str) -> str | None:
    """The NT_GNU_BUILD_ID note's descriptor among `notes` (one SHT_NOTE section), hex."""
    at = 0
    while at + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from(order + "III", notes, at)
        name_at = at + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        if desc_at + descsz > len(notes):
            return None
        if kind == _NT_GNU_BUILD_ID and notes[name_at : name_at + namesz] == b"GNU\0":
            return notes[desc_at : desc_at + descsz].hex()
        at = desc_at + ((descsz + 3) & ~3)
    return None
