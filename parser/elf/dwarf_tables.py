"""The DWARF tables the symbolizer reads of an object: its line rows (LineTable) and
its inlined calls (InlineTable), each decoded only for the code asked about so far and
kept in the symbol cache (DwarfCache)."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

from mem_profiler.parser.common.arrays import range_holding
from mem_profiler.parser.elf import symcache
from mem_profiler.parser.elf.dwarf_dies import DebugInfo
from mem_profiler.parser.elf.elf_file import elf_errors, elf_file, open_elf

if TYPE_CHECKING:
    from elftools.dwarf.compileunit import CompileUnit
    from elftools.dwarf.dwarfinfo import DWARFInfo

Spans = list[tuple[int, int]]  # [low, high) address ranges


@dataclass
class LineTable:
    """DWARF line rows sorted by address; line 0 marks an address with no line."""

    KIND = "lines"  # its symcache kind

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

    @classmethod
    def empty(cls) -> LineTable:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.int32), [])

    @classmethod
    def from_cus(
        cls, dwarf: DWARFInfo, cus: list[CompileUnit], wanted: list[list[int]] | None = None
    ) -> list[tuple[LineTable, Spans | None]]:
        """The line rows of each compile unit, each read whole (`wanted` is not looked at:
        see InlineTable.from_cus)."""
        dies = DebugInfo(dwarf)
        return [(cls._from_cu(cu, dies), None) for cu in cus]

    @classmethod
    def _from_cu(cls, cu: CompileUnit, dies: DebugInfo) -> LineTable:
        """The line rows of one compile unit."""
        files, base, rows = dies.unit_lines(cu.cu_offset)
        if rows is None:
            return cls.empty()
        lines = np.array(rows.lines, np.int64)
        lines[(lines < 0) | (lines > np.iinfo(np.int32).max)] = 0  # damaged: no line
        return cls(
            np.array(rows.addrs, np.uint64),
            np.clip(np.array(rows.files, np.int64) - base, 0, len(files) - 1).astype(np.int32),
            lines.astype(np.int32),
            files,
        )

    @classmethod
    def merge(cls, tables: list[LineTable]) -> LineTable:
        """One sorted table; end-of-sequence rows sort before rows at the same address."""
        files, remapped = _merge_strings([(t.files, t.file_ids) for t in tables])
        addrs = np.concatenate([t.addrs for t in tables]).astype(np.uint64)
        lines = np.concatenate([t.lines for t in tables]).astype(np.int32)
        order = np.lexsort((lines != 0, addrs))
        return cls(addrs[order], remapped[order], lines[order], files)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "addrs": self.addrs,
            "file_ids": self.file_ids,
            "lines": self.lines,
            "files": symcache.pack_strings(self.files),
            "nfiles": np.array(len(self.files)),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LineTable | None:
        """The cached table, None if inconsistent."""
        table = cls(
            arrays["addrs"].astype(np.uint64),
            arrays["file_ids"],
            arrays["lines"],
            symcache.unpack_strings(arrays["files"], int(arrays["nfiles"])),
        )
        n = len(table.addrs)
        if (
            len(table.files) != int(arrays["nfiles"])
            or len(table.lines) != n
            or len(table.file_ids) != n
            or (n and table.file_ids.max() >= len(table.files))
        ):
            return None
        return table


@dataclass
class InlineTable:
    """Inlined calls from DWARF (DW_TAG_inlined_subroutine): address segments, each with
    the innermost inlined call covering it; each call with its function, its call site
    and the inlined call it sits in (-1: it is inlined into the real function)."""

    KIND = "inlines"  # its symcache kind

    starts: np.ndarray  # uint64, sorted: segment i is [starts[i], starts[i + 1])
    innermost: np.ndarray  # int32 per segment: a call, -1 where nothing is inlined
    parent: np.ndarray  # int32 per call
    name_ids: np.ndarray  # int32 per call into names (linkage names, else plain names)
    file_ids: np.ndarray  # int32 per call into files: the call site's file...
    lines: np.ndarray  # int32 per call: ...and line (0: unknown)
    names: list[str]
    files: list[str]

    def chains(self, vaddrs: np.ndarray) -> list[list[tuple[str, tuple[str, int] | None]]]:
        """For each vaddr, the inlined calls holding it, innermost first: (the inlined
        function's name, the site where it is called from its caller); [] where none."""
        out: list[list[tuple[str, tuple[str, int] | None]]] = [[] for _ in range(len(vaddrs))]
        if len(self.starts) == 0:
            return out
        seg = np.searchsorted(self.starts, np.asarray(vaddrs, np.uint64), side="right") - 1
        calls = np.where(seg >= 0, self.innermost[np.maximum(seg, 0)], -1)
        parent, name_ids = self.parent.tolist(), self.name_ids.tolist()
        file_ids, lines = self.file_ids.tolist(), self.lines.tolist()
        for i in np.flatnonzero(calls >= 0).tolist():
            call = int(calls[i])
            while call >= 0:
                site = (self.files[file_ids[call]], lines[call]) if lines[call] else None
                out[i].append((self.names[name_ids[call]], site))
                call = parent[call]
        return out

    @classmethod
    def empty(cls) -> InlineTable:
        ints = np.zeros(0, np.int32)
        return cls(np.zeros(0, np.uint64), ints, ints, ints, ints, ints, [], [])

    @classmethod
    def from_cus(
        cls, dwarf: DWARFInfo, cus: list[CompileUnit], wanted: list[list[int]] | None = None
    ) -> list[tuple[InlineTable, Spans | None]]:
        """The inlined calls of each compile unit, from its tree of DIEs: with `wanted`
        (each unit's sorted addresses), only in the functions holding one of them, each
        table then with the address ranges of the functions read (None: the whole unit)."""
        dies = DebugInfo(dwarf)
        return [
            cls._from_cu(cu.cu_offset, dies, wanted[i] if wanted is not None else None)
            for i, cu in enumerate(cus)
        ]

    @classmethod
    def _from_cu(
        cls, offset: int, dies: DebugInfo, wanted: list[int] | None
    ) -> tuple[InlineTable, Spans | None]:
        files, base = dies.unit_files(offset)
        calls, function_names, spans = dies.inlined_calls(offset, wanted)
        names: dict[str, int] = {}
        name_ids, file_ids, lines, ranges = [], [], [], []
        for i, call in enumerate(calls):
            name_ids.append(names.setdefault(function_names[call.origin], len(names)))
            index = call.call_file - base if call.call_file is not None else -1
            known = 0 <= index < len(files) and call.call_line is not None
            file_ids.append(index if known else 0)
            lines.append(call.call_line if known else 0)
            ranges += [(low, high, i, call.depth) for low, high in call.ranges]
        starts, innermost = _segments(ranges)
        table = cls(
            starts,
            innermost,
            np.array([call.parent for call in calls], np.int32),
            np.array(name_ids, np.int32),
            np.array(file_ids, np.int32),
            np.array(lines, np.int32),
            list(names),
            files or [""],
        )
        return table, spans

    @classmethod
    def merge(cls, tables: list[InlineTable]) -> InlineTable:
        """One table of several compile units' (whose code does not overlap); a segment
        where nothing is inlined sorts before a segment that starts at the same address."""
        first = np.cumsum([0] + [len(t.parent) for t in tables])[:-1]
        innermost = np.concatenate(
            [
                np.where(t.innermost >= 0, t.innermost + f, -1)
                for t, f in zip(tables, first, strict=True)
            ]
        )
        parent = np.concatenate(
            [np.where(t.parent >= 0, t.parent + f, -1) for t, f in zip(tables, first, strict=True)]
        )
        starts = np.concatenate([t.starts for t in tables]).astype(np.uint64)
        order = np.lexsort((innermost >= 0, starts))
        names, name_ids = _merge_strings([(t.names, t.name_ids) for t in tables])
        files, file_ids = _merge_strings([(t.files, t.file_ids) for t in tables])
        return cls(
            starts[order],
            innermost[order].astype(np.int32),
            parent.astype(np.int32),
            name_ids,
            file_ids,
            np.concatenate([t.lines for t in tables]).astype(np.int32),
            names,
            files,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "starts": self.starts,
            "innermost": self.innermost,
            "parent": self.parent,
            "name_ids": self.name_ids,
            "file_ids": self.file_ids,
            "lines": self.lines,
            "names": symcache.pack_strings(self.names),
            "nnames": np.array(len(self.names)),
            "files": symcache.pack_strings(self.files),
            "nfiles": np.array(len(self.files)),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> InlineTable | None:
        """The cached table, None if inconsistent."""
        table = cls(
            arrays["starts"].astype(np.uint64),
            arrays["innermost"],
            arrays["parent"],
            arrays["name_ids"],
            arrays["file_ids"],
            arrays["lines"],
            symcache.unpack_strings(arrays["names"], int(arrays["nnames"])),
            symcache.unpack_strings(arrays["files"], int(arrays["nfiles"])),
        )
        calls = len(table.parent)
        if (
            len(table.innermost) != len(table.starts)
            or any(len(a) != calls for a in (table.name_ids, table.file_ids, table.lines))
            or len(table.names) != int(arrays["nnames"])
            or len(table.files) != int(arrays["nfiles"])
            or (
                calls
                and (
                    table.innermost.max() >= calls
                    or table.parent.max() >= calls
                    or table.name_ids.max() >= len(table.names)
                    or table.file_ids.max() >= len(table.files)
                )
            )
        ):
            return None
        return table


Table = TypeVar("Table", LineTable, InlineTable)  # the tables read from DWARF


_NO_ADDRS = np.zeros(0, np.uint64)


class DwarfCache(Generic[Table]):
    """A LineTable or InlineTable of the code needed so far, decoded lazily (of the
    units covering the addresses asked for, by .debug_aranges, the whole unit or, for
    inlined calls, the functions holding them) and cached on disk."""

    def __init__(
        self, path: str | None, key: str | None, table_type: type[Table], for_uid: int | None
    ) -> None:
        self.path = path
        self.for_uid = for_uid
        self.key = key  # in the symbol cache
        self.table_type: type[Table] = table_type
        self.table: Table = table_type.empty()
        self.cus: set[int] = set()  # the units decoded whole
        # the address ranges decoded of the others, as sorted disjoint (starts, ends)
        self.spans: tuple[np.ndarray, np.ndarray] = (_NO_ADDRS, _NO_ADDRS)
        # .debug_aranges as (starts, ends, CU offsets); None until read. Empty: no aranges,
        # then every CU is decoded at once.
        self.ranges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if path is not None and key:
            self._load(key)

    def covering(self, vaddrs: np.ndarray) -> Table | None:
        """The table, with the code at vaddrs decoded; None without DWARF."""
        if self.path is None:
            return None
        if len(vaddrs) and (self.ranges is None or self._missing(self.ranges, vaddrs)):
            self._decode(self.path, vaddrs)
        return self.table

    def _missing(
        self, ranges: tuple[np.ndarray, np.ndarray, np.ndarray], vaddrs: np.ndarray
    ) -> dict[int, list[int]]:
        """The vaddrs not decoded yet, sorted, by the offset of the CU covering them (by
        `ranges`, the aranges)."""
        starts, ends, cus = ranges
        if len(starts) == 0:
            return {}  # no aranges: everything was decoded
        vaddrs = np.unique(vaddrs)
        idx = range_holding(starts, ends, vaddrs)
        ok = (idx >= 0) & (range_holding(*self.spans, vaddrs) < 0)
        missing: dict[int, list[int]] = {}
        for cu, vaddr in zip(cus[idx[ok]].tolist(), vaddrs[ok].tolist(), strict=True):
            if cu not in self.cus:
                missing.setdefault(cu, []).append(vaddr)
        return missing

    def _load(self, key: str) -> None:
        """Start from the cached table, unless absent or inconsistent (then rebuilt)."""
        arrays = symcache.load(key, self.table_type.KIND)
        if arrays is None:
            return
        try:
            table = self.table_type.from_arrays(arrays)
            cus = set(arrays["cus"].tolist())
            spans = (
                arrays["spans_starts"].astype(np.uint64),
                arrays["spans_ends"].astype(np.uint64),
            )
            ranges = (
                arrays["aranges_starts"].astype(np.uint64),
                arrays["aranges_ends"].astype(np.uint64),
                arrays["aranges_cus"].astype(np.int64),
            )
        except (TypeError, KeyError, ValueError, AttributeError):
            return
        if table is not None and len(spans[0]) == len(spans[1]):
            self.table, self.cus, self.spans, self.ranges = table, cus, spans, ranges

    def _decode(self, path: str, vaddrs: np.ndarray) -> None:
        """Decode the code of `path` at the vaddrs not decoded yet."""
        try:
            self._decode_units(path, vaddrs)
        finally:
            # pyelftools' units, line programs and DIEs refer to each other: a large
            # library's (hundreds of MB) wait for the cyclic collector unless it runs now
            gc.collect()

    def _decode_units(self, path: str, vaddrs: np.ndarray) -> None:
        with elf_errors(path), open_elf(path, self.for_uid) as f:
            # relocations apply to object files (ET_REL) only, never to what a process maps
            dwarf = elf_file(f).get_dwarf_info(relocate_dwarf_sections=False)
            if self.ranges is None:
                self.ranges = _aranges(dwarf)
            if len(self.ranges[0]):
                missing = self._missing(self.ranges, vaddrs)
                offsets = sorted(missing)
                cus = [dwarf.get_CU_at(off) for off in offsets]
                decoded = self.table_type.from_cus(dwarf, cus, [missing[o] for o in offsets])
            else:
                cus = list(dwarf.iter_CUs())
                decoded = self.table_type.from_cus(dwarf, cus)
        spans: Spans = []
        for cu, (_, read) in zip(cus, decoded, strict=True):
            if read is None:
                self.cus.add(cu.cu_offset)
            else:
                spans += read
        self.spans = _union(self.spans, spans)
        self.table = self.table_type.merge([self.table] + [table for table, _ in decoded])
        if self.key:
            symcache.save(
                self.key,
                self.table_type.KIND,
                {
                    **self.table.to_arrays(),
                    "cus": np.array(sorted(self.cus), dtype=np.int64),
                    "spans_starts": self.spans[0],
                    "spans_ends": self.spans[1],
                    "aranges_starts": self.ranges[0],
                    "aranges_ends": self.ranges[1],
                    "aranges_cus": self.ranges[2],
                },
            )


def _union(spans: tuple[np.ndarray, np.ndarray], more: Spans) -> tuple[np.ndarray, np.ndarray]:
    """Sorted disjoint spans and more [low, high) ranges as one sorted disjoint set."""
    if not more:
        return spans
    extra = np.array(more, np.uint64).reshape(-1, 2)
    starts = np.concatenate([spans[0], extra[:, 0]])
    ends = np.concatenate([spans[1], extra[:, 1]])
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    first = np.r_[True, starts[1:] > ends[:-1]]
    last = np.r_[first[1:], True]
    return starts[first], ends[last]


def _aranges(dwarf: DWARFInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """.debug_aranges as sorted (starts, ends, CU offsets) arrays; empty if absent."""
    aranges = dwarf.get_aranges()
    entries = sorted(
        (e.begin_addr, e.length, e.info_offset)
        for e in (aranges.entries if aranges is not None else [])
        if e.length
    )
    table = np.array(entries, dtype=np.uint64).reshape(-1, 3)
    return table[:, 0].copy(), table[:, 0] + table[:, 1], table[:, 2].astype(np.int64)


def _merge_strings(parts: list[tuple[list[str], np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """Several (strings, ids into them) as one list of distinct strings and the ids into it."""
    ids: dict[str, int] = {}
    remapped = []
    for strings, part_ids in parts:
        remap = np.array([ids.setdefault(text, len(ids)) for text in strings], np.int32)
        remapped.append(remap[part_ids] if len(part_ids) else np.zeros(0, np.int32))
    return list(ids), np.concatenate(remapped).astype(np.int32)


def _segments(ranges: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Nested (low, high, call, depth) ranges as sorted segment starts and the innermost
    call covering each segment (-1: none): each range paints its segments, deeper
    ranges after shallower ones."""
    if not ranges:
        return np.zeros(0, np.uint64), np.zeros(0, np.int32)
    table = np.array(ranges, dtype=np.uint64)
    starts = np.unique(np.concatenate([table[:, 0], table[:, 1]]))
    innermost = np.full(len(starts), -1, np.int32)
    first = np.searchsorted(starts, table[:, 0])
    last = np.searchsorted(starts, table[:, 1])
    for i in np.argsort(table[:, 3], kind="stable").tolist():
        innermost[first[i] : last[i]] = int(table[i, 2])
    return starts, innermost
