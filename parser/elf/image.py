"""One ELF object: load segments, build-id, function symbols, its separate debug file,
and the DWARF tables of its lines and inlined calls (dwarf_tables.py), read as asked."""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal, overload

import numpy as np
import pyderust
from elftools.common.exceptions import ELFError

from mem_profiler.core.elf_headers import ElfHeaders, Section, read_headers
from mem_profiler.core.errors import ElfError
from mem_profiler.parser.common.arrays import range_holding
from mem_profiler.parser.elf import eh_frame, symcache
from mem_profiler.parser.elf.dwarf_tables import DwarfCache, InlineTable, LineTable, Table
from mem_profiler.parser.elf.elf_file import elf_errors, elf_file, open_elf

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile


# Where distributions put separate debug files (monkeypatched by tests).
DEBUG_ROOTS: tuple[str, ...] = ("/usr/lib/debug",)

_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_SHT_NOBITS = 8
_SHN_LORESERVE = 0xFF00
_BIND_RANK = {1: 0, 2: 1, 0: 2}  # STB_GLOBAL, STB_WEAK, STB_LOCAL
# What an ELF file may hold past its last section (alignment), as .gnu_debuglink's
# CRC is checked only for a file no longer than that.
_ELF_SLACK = 1 << 16
_SCAN_BYTES = 1 << 22  # a string table is searched for its names' ends this much at a time


@dataclass(frozen=True)
class Segment:
    """A PT_LOAD program header."""

    offset: int
    vaddr: int
    filesz: int


class PackedNames(Sequence[str]):
    """Names kept in one byte string, name i at [starts[i], ends[i]), each decoded when
    it is asked for: a library's symbol table holds hundreds of thousands of names, and
    a profile asks for a few thousand of them."""

    def __init__(self, text: bytes | memoryview, starts: np.ndarray, ends: np.ndarray) -> None:
        self.text, self.starts, self.ends = text, starts, ends

    @classmethod
    def unpack(cls, arrays: dict[str, np.ndarray], count: int) -> PackedNames:
        """The names packed() saved (KeyError or ValueError: not `count` of them)."""
        return cls(*symcache.unpack_spans(arrays, count))

    def packed(self) -> dict[str, np.ndarray]:
        """The arrays symcache saves them as (symcache.pack_spans)."""
        return symcache.pack_spans(self.text, self.starts, self.ends)

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        name = bytes(self.text[int(self.starts[i]) : int(self.ends[i])])
        return name.decode("utf-8", "surrogateescape")


@dataclass
class SymbolTable:
    """Function ranges [starts, ends) sorted by start, with their (mangled) names."""

    starts: np.ndarray  # uint64
    ends: np.ndarray  # uint64
    names: PackedNames

    @classmethod
    def empty(cls) -> SymbolTable:
        none = np.zeros(0, np.int64)
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64), PackedNames(b"", none, none))

    def lookup(self, vaddrs: np.ndarray) -> np.ndarray:
        """Index into names of the function holding each vaddr, -1 where none does."""
        return range_holding(self.starts, self.ends, np.asarray(vaddrs, dtype=np.uint64))


class ElfImage:
    """An ELF file on disk, with its separate debug file if one is installed."""

    def __init__(self, path: str, for_uid: int | None = None) -> None:
        """Open `path`; raise ElfError if it is missing, not a regular file or not ELF, or
        one that `for_uid` (the user a profile is read for) may not read, as every file
        it leads to (user_paths)."""
        self.path = path
        self.for_uid = for_uid
        with elf_errors(path), open_elf(path, for_uid) as f:
            if f.read(4) != b"\x7fELF":
                raise ElfError(f"{path} is not an ELF binary.")
            headers = _headers(f)
        self.segments = [Segment(*s) for s in headers.segments]
        self.build_id = headers.build_id
        self._has_symtab = ".symtab" in headers.sections
        self._has_lines = {".debug_line", ".debug_info"} <= headers.sections
        self._debuglink = _debuglink(headers.debuglink, headers.little_endian)
        self._symbols: SymbolTable | None = None
        self._frame_ranges: tuple[np.ndarray, np.ndarray] | None = None
        self._dwarf: dict[type, DwarfCache] = {}

    @property
    def basename(self) -> str:
        return os.path.basename(self.path)

    def offsets_to_vaddrs(self, offsets: np.ndarray) -> np.ndarray:
        """Link-time vaddrs of file offsets, via the PT_LOAD segment holding each one.

        Offsets outside every segment are mapped through the first segment.
        """
        offsets = np.asarray(offsets, dtype=np.uint64)
        out = offsets.copy()
        done = np.zeros(len(offsets), dtype=bool)
        for seg in self.segments:
            inside = ~done & (offsets >= seg.offset) & (offsets < seg.offset + max(seg.filesz, 1))
            out[inside] = offsets[inside] - np.uint64(seg.offset) + np.uint64(seg.vaddr)
            done |= inside
        if self.segments and not done.all():
            first = self.segments[0]
            out[~done] = offsets[~done] - np.uint64(first.offset) + np.uint64(first.vaddr)
        return out

    @functools.cached_property
    def debug_path(self) -> str | None:
        """The separate debug file for this object, if one is installed."""
        return find_debug_file(self.path, self.build_id, self._debuglink, self.for_uid)

    @property
    def has_dwarf(self) -> bool:
        """DWARF debug information, here or in a debug file: its lookups walk it."""
        return self._has_lines or self.debug_path is not None

    @property
    def stripped(self) -> bool:
        """No .symtab here nor in a debug file: only the functions it exports are named."""
        return not self._has_symtab and self.debug_path is None

    @property
    def symbols_read(self) -> bool:
        """Whether symbols() has read them: a lookup in it is quick."""
        return self._symbols is not None

    def symbols(self) -> SymbolTable:
        """FUNC symbols from .symtab (here or in the debug file), else from .dynsym.

        Raises ElfError if the symbol table cannot be read."""
        if self._symbols is None:
            if self._has_symtab:
                source, section, kind = self.path, ".symtab", "symtab"
            elif self.debug_path is not None:
                source, section, kind = self.debug_path, ".symtab", "debug"
            else:
                source, section, kind = self.path, ".dynsym", "dynsym"
            key = symcache.key(self.build_id, source)
            self._symbols = _symbols_from_cache(symcache.load(key, kind) if key else None)
            if self._symbols is None:
                with elf_errors(source):
                    self._symbols = _read_symbols(source, section, self.for_uid)
                if key:
                    symcache.save(
                        key,
                        kind,
                        {
                            "starts": self._symbols.starts,
                            "ends": self._symbols.ends,
                            **self._symbols.names.packed(),
                        },
                    )
        return self._symbols

    def function_starts(self, vaddrs: np.ndarray) -> np.ndarray:
        """For each vaddr the start of the function holding it by the object's
        call-frame information (eh_frame), the vaddr itself where none does: what names
        the functions no symbol names."""
        if self._frame_ranges is None:
            self._frame_ranges = _frame_ranges(self.path, self.for_uid)
        vaddrs = np.asarray(vaddrs, dtype=np.uint64)
        starts, ends = self._frame_ranges
        holding = range_holding(starts, ends, vaddrs)
        return np.where(holding >= 0, starts[np.maximum(holding, 0)], vaddrs)

    def lines(self, vaddrs: np.ndarray) -> list[tuple[str, int] | None]:
        """(file, line) for each vaddr from DWARF line tables, None where unknown.

        Raises ElfError if the DWARF data cannot be read."""
        table = self._dwarf_table(LineTable, vaddrs)
        return table.lookup(vaddrs) if table is not None else [None] * len(vaddrs)

    def inlined(self, vaddrs: np.ndarray) -> list[list[tuple[str, tuple[str, int] | None]]]:
        """For each vaddr, the calls inlined there, innermost first (see InlineTable.chains).

        Raises ElfError if the DWARF data cannot be read."""
        table = self._dwarf_table(InlineTable, vaddrs)
        return table.chains(vaddrs) if table is not None else [[] for _ in range(len(vaddrs))]

    def _dwarf_table(self, table_type: type[Table], vaddrs: np.ndarray) -> Table | None:
        """The table of type LineTable or InlineTable covering vaddrs; None without DWARF."""
        if table_type not in self._dwarf:
            source = self.path if self._has_lines else self.debug_path
            self._dwarf[table_type] = DwarfCache(
                source, symcache.key(self.build_id, source), table_type, self.for_uid
            )
        return self._dwarf[table_type].covering(np.asarray(vaddrs, dtype=np.uint64))


@functools.lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """Rust (legacy `_ZN...17h<hash>E` and v0 `_R...`) and C++ names demangled, others
    unchanged. Rust names keep their hash and crate disambiguators (short_name drops them).

    A C++ function's name always has parameter types after the `E` of its nested name,
    which Rust's demangler refuses: it is tried first."""
    if name.startswith(("_R", "_ZN")):
        try:
            return pyderust.demangle(name, include_hash=True)
        except pyderust.DemangleError:
            pass
    if not name.startswith("_Z"):
        return name
    import cxxfilt  # here: loading it runs ldconfig twice, which C and Python need not

    try:
        return cxxfilt.demangle(name)
    except cxxfilt.Error:
        return name


def find_debug_file(
    path: str,
    build_id: str | None,
    debuglink: tuple[str, int] | None,
    for_uid: int | None = None,
) -> str | None:
    """Separate debug file, searched as gdb does: by build-id under each debug root
    (.build-id/xx/yyyy.debug), then by .gnu_debuglink beside the file, in its .debug/
    folder and under each debug root + its folder. A candidate must carry the same
    build-id, or without one, the CRC-32 that .gnu_debuglink records."""
    candidates = []
    if build_id and len(build_id) > 2:
        candidates += [
            os.path.join(root, ".build-id", build_id[:2], build_id[2:] + ".debug")
            for root in DEBUG_ROOTS
        ]
    if debuglink:
        name = debuglink[0]
        # the folder as given and with symlinks resolved (/lib -> /usr/lib on Debian)
        for folder in dict.fromkeys(
            os.path.dirname(p) for p in (os.path.abspath(path), os.path.realpath(path))
        ):
            candidates += [os.path.join(folder, name), os.path.join(folder, ".debug", name)]
            candidates += [os.path.join(root + folder, name) for root in DEBUG_ROOTS]
    for candidate in dict.fromkeys(candidates):
        if os.path.realpath(candidate) == os.path.realpath(path) or not os.path.isfile(candidate):
            continue
        try:
            with elf_errors(candidate), open_elf(candidate, for_uid) as f:
                found = _headers(f).build_id
                if build_id and found:
                    same = found == build_id
                else:
                    same = debuglink is not None and _crc32(f, elf_file(f)) == debuglink[1]
                if same:
                    return candidate
        except ElfError:
            continue
    return None


def _crc32(f: BinaryIO, elf: ELFFile) -> int | None:
    """CRC-32 of a whole file, as .gnu_debuglink records it; None for a file longer than
    its ELF headers say (a sparse terabyte would take minutes to read)."""
    end = elf["e_shoff"] + elf["e_shnum"] * elf["e_shentsize"]
    for section in elf.iter_sections():
        if section["sh_type"] != "SHT_NOBITS":
            end = max(end, section["sh_offset"] + section["sh_size"])
    if os.fstat(f.fileno()).st_size > end + _ELF_SLACK:
        return None
    f.seek(0)
    crc = 0
    while chunk := f.read(1 << 20):
        crc = zlib.crc32(chunk, crc)
    return crc


@functools.cache
def _section_types() -> dict[str, int]:
    """pyelftools' names of section types back to their numbers."""
    from elftools.elf import enums

    tables = (
        enums.ENUM_SH_TYPE_BASE,
        enums.ENUM_SH_TYPE_AMD64,
        enums.ENUM_SH_TYPE_AARCH64,
        enums.ENUM_SH_TYPE_ARM,
        enums.ENUM_SH_TYPE_MIPS,
        enums.ENUM_SH_TYPE_RISCV,
    )
    return {name: number for table in tables for name, number in table.items()}


def _headers(f: BinaryIO) -> ElfHeaders:
    """The headers of an open ELF file: our own reader's, or pyelftools' for a file
    it does not take."""
    return read_headers(f) or _pyelftools_headers(f)


def _pyelftools_headers(f: BinaryIO) -> ElfHeaders:
    """What read_headers reads, from pyelftools (which raises on what it cannot take)."""
    f.seek(0)
    elf = elf_file(f)
    link = elf.get_section_by_name(".gnu_debuglink")
    return ElfHeaders(
        elf.little_endian,
        [
            (s["p_offset"], s["p_vaddr"], s["p_filesz"])
            for s in elf.iter_segments()
            if s["p_type"] == "PT_LOAD"
        ],
        any(s["p_type"] == "PT_INTERP" for s in elf.iter_segments()),
        {section.name for section in elf.iter_sections()},
        _build_id(elf),
        None if link is None else link.data(),
        elf.elfclass,
        tuple(
            Section(
                s.name,
                s.header.sh_type
                if isinstance(s.header.sh_type, int)
                else _section_types()[s.header.sh_type],
                s["sh_addr"],
                s["sh_offset"],
                s["sh_size"],
                s["sh_link"],
                s["sh_entsize"],
            )
            for s in elf.iter_sections()
        ),
    )


def _section_data(f: BinaryIO, section: Section) -> bytes:
    """A section's bytes (none for SHT_NOBITS: a debug file's copies of the loaded
    sections); ValueError where the file ends before its end."""
    if section.type == _SHT_NOBITS:
        return b""
    f.seek(section.offset)
    data = f.read(section.size)
    if len(data) != section.size:
        raise ValueError(f"section {section.name} is cut short")
    return data


def _build_id(elf: ELFFile) -> str | None:
    from elftools.elf.sections import NoteSection

    for section in elf.iter_sections():
        if not isinstance(section, NoteSection):  # pyelftools' class of SHT_NOTE
            continue
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return str(note["n_desc"])
    return None


def _debuglink(data: bytes | None, little_endian: bool) -> tuple[str, int] | None:
    """.gnu_debuglink's contents: the debug file's name, and its CRC-32 after the name's
    padding."""
    if data is None:
        return None
    name = data.split(b"\0", 1)[0]
    crc_at = (len(name) + 4) & ~3
    if not name or len(data) < crc_at + 4:
        return None
    order: Literal["little", "big"] = "little" if little_endian else "big"
    return name.decode("utf-8", "surrogateescape"), int.from_bytes(data[crc_at : crc_at + 4], order)


def _frame_ranges(path: str, for_uid: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The functions' ranges by the object's .eh_frame_hdr and .eh_frame (eh_frame.py);
    none where it has no such sections or they cannot be read."""
    none = (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    try:
        with open_elf(path, for_uid) as f:
            headers = _headers(f)
            found = {s.name: s for s in headers.section_headers}
            if ".eh_frame_hdr" not in found or ".eh_frame" not in found:
                return none
            hdr, frame = found[".eh_frame_hdr"], found[".eh_frame"]
            return eh_frame.function_ranges(
                hdr, _section_data(f, hdr), frame, _section_data(f, frame), headers.little_endian
            )
    except (OSError, ValueError, ElfError, ELFError):
        return none


def _symbols_from_cache(arrays: dict[str, np.ndarray] | None) -> SymbolTable | None:
    """The cached table, or None if absent or inconsistent (then it is rebuilt)."""
    if arrays is None:
        return None
    try:
        starts, ends = arrays["starts"].astype(np.uint64), arrays["ends"].astype(np.uint64)
        names = PackedNames.unpack(arrays, len(starts))
    except (TypeError, KeyError, ValueError, AttributeError):
        return None
    if len(names) != len(starts) or len(ends) != len(starts):
        return None
    return SymbolTable(starts, ends, names)


def _read_symbols(path: str, section_name: str, for_uid: int | None) -> SymbolTable:
    """FUNC and IFUNC symbols of one symbol table section, aliases merged."""
    with open_elf(path, for_uid) as f:
        headers = _headers(f)
        table = headers.section_headers
        section = next((s for s in table if s.name == section_name), None)
        if section is None or section.entsize == 0 or section.link >= len(table):
            return SymbolTable.empty()
        end = "<" if headers.little_endian else ">"
        if headers.bits == 64:
            fields = [
                ("name", "u4"),
                ("info", "u1"),
                ("other", "u1"),
                ("shndx", "u2"),
                ("value", "u8"),
                ("size", "u8"),
            ]
        else:
            fields = [
                ("name", "u4"),
                ("value", "u4"),
                ("size", "u4"),
                ("info", "u1"),
                ("other", "u1"),
                ("shndx", "u2"),
            ]
        dtype = np.dtype([(n, end + t) for n, t in fields])
        data = _section_data(f, section)
        syms = np.frombuffer(data, dtype=dtype, count=len(data) // dtype.itemsize)
        strtab = _section_data(f, table[section.link])
        section_ends = np.array([s.addr + s.size for s in table], dtype=np.uint64)

    kind = syms["info"] & 0xF
    keep = (
        ((kind == _STT_FUNC) | (kind == _STT_GNU_IFUNC))
        & (syms["shndx"] != 0)
        & (syms["value"] != 0)
    )
    syms = syms[keep]
    if len(syms) == 0:  # a stripped executable exports no functions
        return SymbolTable.empty()
    offsets = syms["name"].astype(np.int64)
    lengths, underscores = _name_shapes(strtab, offsets)
    starts = syms["value"].astype(np.uint64)
    sizes = syms["size"].astype(np.uint64)
    rank = np.array([_BIND_RANK.get(b, 3) for b in range(16)], np.int64)[syms["info"] >> 4]
    # At one address keep the preferred alias: fewest leading underscores (strdup, not
    # __strdup or __GI___strdup), then global before weak before local, then shortest.
    order = np.lexsort((lengths, rank, underscores, starts))
    starts, sizes, shndx = starts[order], sizes[order], syms["shndx"][order]
    offsets, lengths = offsets[order], lengths[order]
    first = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]])
    sized_end = np.maximum.reduceat(np.where(sizes > 0, starts + sizes, 0), first)
    ustarts = starts[first]
    # Zero-size symbols reach to the next symbol, within their section.
    next_start = np.r_[ustarts[1:], np.uint64(np.iinfo(np.uint64).max)]
    sec = shndx[first].astype(np.int64)
    sec_end = np.where(
        sec < min(len(section_ends), _SHN_LORESERVE),
        section_ends[np.minimum(sec, len(section_ends) - 1)],
        ustarts + 1,
    )
    ends = np.where(sized_end > 0, sized_end, np.minimum(next_start, sec_end))
    name_starts = offsets[first]
    return SymbolTable(
        ustarts,
        ends.astype(np.uint64),
        PackedNames(strtab, name_starts, name_starts + lengths[first]),
    )


def _name_shapes(strtab: bytes, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The length of each name at `offsets` in a string table, without the version that
    .symtab of glibc gives its symbols (`_IO_puts@@GLIBC_2.2.5`), and its leading
    underscores."""
    if len(offsets) and int(offsets.max()) >= len(strtab):
        raise ValueError("a symbol's name is outside its string table")
    table = np.frombuffer(strtab, np.uint8)
    versioned = b"@" in strtab  # a C++ library's table of many megabytes has no `@`
    ends = []
    # in slices: a mask of a whole table of 80 MB would be as many fresh pages
    for first in range(0, len(strtab), _SCAN_BYTES):
        part = table[first : first + _SCAN_BYTES]
        stop = part == 0
        if versioned:
            stop |= part == ord("@")
        ends.append(np.flatnonzero(stop) + first)
    stops = np.concatenate([*ends, [len(strtab)]])
    lengths = stops[np.searchsorted(stops, offsets)] - offsets
    underscores = np.zeros(len(offsets), np.int64)
    more = np.ones(len(offsets), bool)
    while True:
        at = offsets + underscores
        more &= (at < len(strtab)) & (table[np.minimum(at, len(strtab) - 1)] == ord("_"))
        if not more.any():
            return lengths, underscores
        underscores += more
