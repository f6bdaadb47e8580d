"""One ELF object: load segments, build-id, function symbols and DWARF line tables."""

from __future__ import annotations

import contextlib
import functools
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import cxxfilt
import numpy as np
import pyderust
from elftools.common.exceptions import DWARFError, ELFError
from elftools.elf.elffile import ELFFile

from mem_profiler.parser import symcache
from mem_profiler.parser.errors import ElfError

# Where distributions put separate debug files (monkeypatched by tests).
DEBUG_ROOTS: tuple[str, ...] = ("/usr/lib/debug",)

_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_SHN_LORESERVE = 0xFF00
_BIND_RANK = {1: 0, 2: 1, 0: 2}  # STB_GLOBAL, STB_WEAK, STB_LOCAL


@dataclass(frozen=True)
class Segment:
    """A PT_LOAD program header."""

    offset: int
    vaddr: int
    filesz: int


@dataclass
class SymbolTable:
    """Function ranges [starts, ends) sorted by start, with their (mangled) names."""

    starts: np.ndarray  # uint64
    ends: np.ndarray  # uint64
    names: list[str]

    @classmethod
    def empty(cls) -> SymbolTable:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64), [])

    def lookup(self, vaddrs: np.ndarray) -> np.ndarray:
        """Index into names of the function holding each vaddr, -1 where none does."""
        vaddrs = np.asarray(vaddrs, dtype=np.uint64)
        idx = np.searchsorted(self.starts, vaddrs, side="right").astype(np.int64) - 1
        hit = idx >= 0
        hit[hit] = vaddrs[hit] < self.ends[idx[hit]]
        return np.where(hit, idx, -1)


@dataclass
class LineTable:
    """DWARF line rows sorted by address; line 0 marks an address with no line."""

    addrs: np.ndarray  # uint64
    file_ids: np.ndarray  # int32 into files
    lines: np.ndarray  # int32
    files: list[str]

    def lookup(self, vaddrs: np.ndarray) -> list[tuple[str, int] | None]:
        """(file, line) of each vaddr, None where the table has nothing."""
        idx = np.searchsorted(self.addrs, np.asarray(vaddrs, dtype=np.uint64), side="right") - 1
        out: list[tuple[str, int] | None] = []
        for i in idx.tolist():
            line = int(self.lines[i]) if i >= 0 else 0
            out.append((self.files[self.file_ids[i]], line) if line else None)
        return out


class ElfImage:
    """An ELF file on disk, with its separate debug file if one is installed."""

    def __init__(self, path: str) -> None:
        """Open `path`; raise ElfError if it is missing, a directory or not ELF."""
        self.path = path
        if os.path.isdir(path):
            raise ElfError(f"{path} is a directory, not a binary.")
        with _elf_errors(path), open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                raise ElfError(f"{path} is not an ELF binary.")
            f.seek(0)
            elf = ELFFile(f)
            self.segments = [
                Segment(s["p_offset"], s["p_vaddr"], s["p_filesz"])
                for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            self.build_id = _build_id(elf)
            self._has_symtab = elf.get_section_by_name(".symtab") is not None
            self._has_lines = all(elf.get_section_by_name(name) is not None
                                  for name in (".debug_line", ".debug_info"))
            self._debuglink = _debuglink(elf)
        self._symbols: SymbolTable | None = None
        self._lines: _LineCache | None = None

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
        return find_debug_file(self.path, self.build_id, self._debuglink)

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
            cached = symcache.load(self.build_id, kind) if self.build_id else None
            self._symbols = _symbols_from_cache(cached)
            if self._symbols is None:
                with _elf_errors(source):
                    self._symbols = _read_symbols(source, section)
                if self.build_id:
                    symcache.save(self.build_id, kind, {
                        "starts": self._symbols.starts, "ends": self._symbols.ends,
                        "names": symcache.pack_strings(self._symbols.names)})
        return self._symbols

    def lines(self, vaddrs: np.ndarray) -> list[tuple[str, int] | None]:
        """(file, line) for each vaddr from DWARF line tables, None where unknown.

        Raises ElfError if the DWARF data cannot be read."""
        if self._lines is None:
            source = self.path if self._has_lines else self.debug_path
            self._lines = _LineCache(source, self.build_id)
        return self._lines.lookup(vaddrs)


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
    try:
        return cxxfilt.demangle(name)
    except cxxfilt.Error:
        return name


def find_debug_file(path: str, build_id: str | None,
                    debuglink: tuple[str, int] | None) -> str | None:
    """Separate debug file, searched as gdb does: by build-id under each debug root
    (.build-id/xx/yyyy.debug), then by .gnu_debuglink beside the file, in its .debug/
    folder and under each debug root + its folder. A candidate must carry the same
    build-id, or without one, the CRC-32 that .gnu_debuglink records."""
    candidates = []
    if build_id and len(build_id) > 2:
        candidates += [os.path.join(root, ".build-id", build_id[:2], build_id[2:] + ".debug")
                       for root in DEBUG_ROOTS]
    if debuglink:
        name = debuglink[0]
        # the folder as given and with symlinks resolved (/lib -> /usr/lib on Debian)
        for folder in dict.fromkeys(os.path.dirname(p) for p in (os.path.abspath(path),
                                                                 os.path.realpath(path))):
            candidates += [os.path.join(folder, name), os.path.join(folder, ".debug", name)]
            candidates += [os.path.join(root + folder, name) for root in DEBUG_ROOTS]
    for candidate in dict.fromkeys(candidates):
        if os.path.realpath(candidate) == os.path.realpath(path) or not os.path.isfile(candidate):
            continue
        try:
            with _elf_errors(candidate), open(candidate, "rb") as f:
                found = _build_id(ELFFile(f))
                if build_id and found:
                    same = found == build_id
                else:
                    same = debuglink is not None and _crc32(f) == debuglink[1]
                if same:
                    return candidate
        except ElfError:
            continue
    return None


def _crc32(f: BinaryIO) -> int:
    """CRC-32 of a whole file, as .gnu_debuglink records it."""
    f.seek(0)
    crc = 0
    while chunk := f.read(1 << 20):
        crc = zlib.crc32(chunk, crc)
    return crc


@contextlib.contextmanager
def _elf_errors(path: str) -> Iterator[None]:
    """Turn the ways reading an ELF file can fail into ElfError."""
    try:
        yield
    except FileNotFoundError:
        raise ElfError(f"{path} does not exist.") from None
    except OSError as e:
        raise ElfError(f"cannot read {path}: {e.strerror or e}.") from None
    except (ELFError, DWARFError, ValueError, KeyError, IndexError) as e:
        raise ElfError(f"{path} is not a valid ELF binary ({e}).") from None


def _build_id(elf: ELFFile) -> str | None:
    for section in elf.iter_sections():
        if section["sh_type"] != "SHT_NOTE":
            continue
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return str(note["n_desc"])
    return None


def _debuglink(elf: ELFFile) -> tuple[str, int] | None:
    """.gnu_debuglink: the debug file's name, and its CRC-32 after the name's padding."""
    section = elf.get_section_by_name(".gnu_debuglink")
    if section is None:
        return None
    data = section.data()
    name = data.split(b"\0", 1)[0]
    crc_at = (len(name) + 4) & ~3
    if not name or len(data) < crc_at + 4:
        return None
    order = "little" if elf.little_endian else "big"
    return name.decode("utf-8", "surrogateescape"), int.from_bytes(data[crc_at:crc_at + 4], order)


def _symbols_from_cache(arrays: dict[str, np.ndarray] | None) -> SymbolTable | None:
    """The cached table, or None if absent or inconsistent (then it is rebuilt)."""
    try:
        starts, ends = arrays["starts"].astype(np.uint64), arrays["ends"].astype(np.uint64)
        names = symcache.unpack_strings(arrays["names"], len(starts))
    except (TypeError, KeyError, ValueError, AttributeError):
        return None
    if len(names) != len(starts) or len(ends) != len(starts):
        return None
    return SymbolTable(starts, ends, names)


def _read_symbols(path: str, section_name: str) -> SymbolTable:
    """FUNC and IFUNC symbols of one symbol table section, aliases merged."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        section = elf.get_section_by_name(section_name)
        if section is None or section["sh_entsize"] == 0:
            return SymbolTable.empty()
        end = ">" if not elf.little_endian else "<"
        if elf.elfclass == 64:
            fields = [("name", "u4"), ("info", "u1"), ("other", "u1"), ("shndx", "u2"),
                      ("value", "u8"), ("size", "u8")]
        else:
            fields = [("name", "u4"), ("value", "u4"), ("size", "u4"), ("info", "u1"),
                      ("other", "u1"), ("shndx", "u2")]
        dtype = np.dtype([(n, end + t) for n, t in fields])
        data = section.data()
        syms = np.frombuffer(data, dtype=dtype, count=len(data) // dtype.itemsize)
        strtab = elf.get_section(section["sh_link"]).data()
        section_ends = np.array([s["sh_addr"] + s["sh_size"] for s in elf.iter_sections()],
                                dtype=np.uint64)

    kind = syms["info"] & 0xF
    keep = (((kind == _STT_FUNC) | (kind == _STT_GNU_IFUNC)) & (syms["shndx"] != 0)
            & (syms["value"] != 0))
    syms = syms[keep]
    if len(syms) == 0:  # a stripped executable exports no functions
        return SymbolTable.empty()
    # .symtab of glibc names symbols with their version (`_IO_puts@@GLIBC_2.2.5`): drop it.
    names = [strtab[o:strtab.index(b"\0", o)].split(b"@", 1)[0].decode("utf-8", "surrogateescape")
             for o in syms["name"].tolist()]
    starts = syms["value"].astype(np.uint64)
    sizes = syms["size"].astype(np.uint64)
    rank = np.array([_BIND_RANK.get(b, 3) for b in (syms["info"] >> 4).tolist()], np.int64)
    underscores = np.array([len(n) - len(n.lstrip("_")) for n in names], np.int64)
    lengths = np.array([len(n) for n in names], np.int64)
    # At one address keep the preferred alias: fewest leading underscores (strdup, not
    # __strdup or __GI___strdup), then global before weak before local, then shortest.
    order = np.lexsort((lengths, rank, underscores, starts))
    starts, sizes, shndx = starts[order], sizes[order], syms["shndx"][order]
    names = [names[i] for i in order.tolist()]
    first = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]])
    sized_end = np.maximum.reduceat(np.where(sizes > 0, starts + sizes, 0), first)
    ustarts = starts[first]
    # Zero-size symbols reach to the next symbol, within their section.
    next_start = np.r_[ustarts[1:], np.uint64(np.iinfo(np.uint64).max)]
    sec = shndx[first].astype(np.int64)
    sec_end = np.where(sec < min(len(section_ends), _SHN_LORESERVE),
                       section_ends[np.minimum(sec, len(section_ends) - 1)], ustarts + 1)
    ends = np.where(sized_end > 0, sized_end, np.minimum(next_start, sec_end))
    return SymbolTable(ustarts, ends.astype(np.uint64), [names[i] for i in first.tolist()])


class _LineCache:
    """Line rows of the compile units needed so far, decoded lazily and cached on disk."""

    def __init__(self, path: str | None, build_id: str | None) -> None:
        self.path = path
        self.build_id = build_id
        self.table = LineTable(np.zeros(0, np.uint64), np.zeros(0, np.int32),
                               np.zeros(0, np.int32), [])
        self.cus: set[int] = set()
        # .debug_aranges as (starts, ends, CU offsets); None until read. Empty: no aranges,
        # then every CU is decoded at once.
        self.ranges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if path is not None and build_id:
            self._load()

    def lookup(self, vaddrs: np.ndarray) -> list[tuple[str, int] | None]:
        if self.path is None or len(vaddrs) == 0:
            return [None] * len(vaddrs)
        vaddrs = np.asarray(vaddrs, dtype=np.uint64)
        if self.ranges is None or self._missing(vaddrs):
            self._decode(vaddrs)
        return self.table.lookup(vaddrs)

    def _missing(self, vaddrs: np.ndarray) -> set[int]:
        """Offsets of the CUs covering vaddrs that are not decoded yet."""
        starts, ends, cus = self.ranges
        if len(starts) == 0:
            return set()  # no aranges: everything was decoded
        idx = np.searchsorted(starts, vaddrs, side="right") - 1
        ok = idx >= 0
        ok[ok] = vaddrs[ok] < ends[idx[ok]]
        return set(cus[idx[ok]].tolist()) - self.cus

    def _load(self) -> None:
        """Start from the cached rows, unless absent or inconsistent (then rebuilt)."""
        arrays = symcache.load(self.build_id, "lines")
        try:
            table = LineTable(arrays["addrs"].astype(np.uint64), arrays["file_ids"],
                              arrays["lines"], symcache.unpack_strings(
                                  arrays["files"], int(arrays["nfiles"])))
            cus = set(arrays["cus"].tolist())
            ranges = (arrays["starts"].astype(np.uint64), arrays["ends"].astype(np.uint64),
                      arrays["offs"].astype(np.int64))
        except (TypeError, KeyError, ValueError, AttributeError):
            return
        n = len(table.addrs)
        if len(table.files) != int(arrays["nfiles"]) or len(table.lines) != n \
                or len(table.file_ids) != n or (n and table.file_ids.max() >= len(table.files)):
            return
        self.table, self.cus, self.ranges = table, cus, ranges

    def _decode(self, vaddrs: np.ndarray) -> None:
        """Decode the compile units covering vaddrs that are not decoded yet."""
        with _elf_errors(self.path), open(self.path, "rb") as f:
            dwarf = ELFFile(f).get_dwarf_info()
            if self.ranges is None:
                self.ranges = _aranges(dwarf)
            if len(self.ranges[0]):
                cus = [dwarf.get_CU_at(off) for off in sorted(self._missing(vaddrs))]
            else:
                cus = list(dwarf.iter_CUs())
            tables = [self.table] + [_cu_lines(dwarf, cu) for cu in cus]
        self.cus.update(cu.cu_offset for cu in cus)
        self.table = _merge(tables)
        if self.build_id:
            symcache.save(self.build_id, "lines", {
                "addrs": self.table.addrs, "file_ids": self.table.file_ids,
                "lines": self.table.lines, "files": symcache.pack_strings(self.table.files),
                "nfiles": np.array(len(self.table.files)),
                "cus": np.array(sorted(self.cus), dtype=np.int64),
                "starts": self.ranges[0], "ends": self.ranges[1], "offs": self.ranges[2]})


def _aranges(dwarf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """.debug_aranges as sorted (starts, ends, CU offsets) arrays; empty if absent."""
    aranges = dwarf.get_aranges()
    entries = sorted((e.begin_addr, e.length, e.info_offset)
                     for e in (aranges.entries if aranges is not None else []) if e.length)
    table = np.array(entries, dtype=np.uint64).reshape(-1, 3)
    return table[:, 0].copy(), table[:, 0] + table[:, 1], table[:, 2].astype(np.int64)


def _cu_lines(dwarf, cu) -> LineTable:
    """The line rows of one compile unit, with file names made absolute."""
    program = dwarf.line_program_for_CU(cu)
    if program is None or not program.header["file_entry"]:
        return LineTable(np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.int32), [])
    top = cu.get_top_DIE()
    comp_dir = top.attributes.get("DW_AT_comp_dir")
    comp_dir = comp_dir.value.decode("utf-8", "surrogateescape") if comp_dir else ""
    header = program.header
    dirs = [d.decode("utf-8", "surrogateescape") for d in header["include_directory"]]
    files = []
    for entry in header["file_entry"]:
        name = entry.name.decode("utf-8", "surrogateescape")
        if header["version"] >= 5:
            folder = dirs[entry.dir_index] if entry.dir_index < len(dirs) else ""
        else:
            folder = dirs[entry.dir_index - 1] if 0 < entry.dir_index <= len(dirs) else ""
        files.append(os.path.normpath(os.path.join(comp_dir, folder, name)))
    base = 0 if header["version"] >= 5 else 1
    addrs, file_ids, lines = [], [], []
    for entry in program.get_entries():
        state = entry.state
        if state is None:
            continue
        addrs.append(state.address)
        file_ids.append(min(max(state.file - base, 0), len(files) - 1))
        lines.append(0 if state.end_sequence else state.line)
    return LineTable(np.array(addrs, np.uint64), np.array(file_ids, np.int32),
                     np.array(lines, np.int32), files)


def _merge(tables: list[LineTable]) -> LineTable:
    """One sorted table from several; end-of-sequence rows sort before rows at the same address."""
    ids: dict[str, int] = {}
    parts = []
    for t in tables:
        remap = np.array([ids.setdefault(name, len(ids)) for name in t.files], np.int32)
        parts.append(remap[t.file_ids])
    addrs = np.concatenate([t.addrs for t in tables]).astype(np.uint64)
    file_ids = np.concatenate(parts).astype(np.int32)
    lines = np.concatenate([t.lines for t in tables]).astype(np.int32)
    order = np.lexsort((lines != 0, addrs))
    return LineTable(addrs[order], file_ids[order], lines[order], list(ids))
