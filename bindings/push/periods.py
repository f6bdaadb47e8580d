"""A window's snapshots cut into periods: each heap as pprof's tables for the time since
the snapshot before, its in-use figures as they are at the end of the period and its
allocated ones what was allocated during it.

The window is kept as its snapshots tell it (parser/read/live_window.py), and each of
its stacks is named once, the first time it has counts: its sample, pprof's stack as the
backend shows it, is kept for every later period, and a period adds to the samples only
what its snapshot changed. The allocated figures are differences of each sample's running
total in the window rounded once, so the periods of a window add up to its total
exactly: nothing is counted twice or lost between pushes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mem_profiler.core.errors import BuildIdMismatch, ElfError
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.arrays import clip_int64, runs
from mem_profiler.parser.read.context_tree import StackTree
from mem_profiler.parser.read.live_window import Column, LiveWindow
from mem_profiler.parser.read.window_snapshot import WindowSnapshot
from mem_profiler.parser.report.pprof import (
    Function,
    LocationTable,
    PprofTables,
    Samples,
    pprof_tables,
)
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile, kept_images, symbolize

# Stacks named at once: what bounds the symbolizer's memory on a window's first period
# (a PyTorch program's 370,000 stacks are six batches).
BATCH_STACKS = 65536
_UNNAMED, _NO_SAMPLE = -2, -1  # a stack's sample before it is named; one of no frame


@dataclass
class HeapPeriod:
    """One heap of one process over one period."""

    profile: HeapProfile  # who ran, the heap, its rate
    tables: PprofTables  # values: allocated during the period, in use at its end
    start_ns: int
    end_ns: int
    warnings: list[str]


class _Samples:
    """Every sample the window's stacks were named as, with pprof's tables of their
    locations, functions and mappings, and their running figures in the window."""

    def __init__(self) -> None:
        self.functions: list[Function] = []
        self.mappings: list[tuple[MemoryMapping, str]] = []
        # the locations (LocationTable's columns), their function and mapping ids ours
        self._mapping, self._address = Column(np.int64), Column(np.uint64)
        self._lines, self._function, self._line = (
            Column(np.int64),
            Column(np.int64),
            Column(np.int64),
        )
        self._lines.extend(np.zeros(1, np.int64))
        self._ids: dict[tuple[str, object], int] = {}
        self.heap = Column(np.int16)
        self.location_ids = Column(np.int32)  # of every sample, one after another
        self.bounds = Column(np.int64)  # sample i's are location_ids[bounds[i]:bounds[i + 1]]
        self.bounds.extend(np.zeros(1, np.int64))
        self.in_use = Column(np.float64, 2)  # objects and bytes, now
        self.allocated = Column(np.float64, 2)  # objects and bytes, in the window
        self.pushed = Column(np.int64, 2)  # `allocated` rounded, as the last period ended

    @property
    def locations(self) -> LocationTable:
        return LocationTable(
            self._mapping.values,
            self._address.values,
            self._lines.values,
            self._function.values,
            self._line.values,
        )

    def _intern(self, table: list, kind: str, key: object, item: object) -> int:
        """The id (from 1) of `item` in `table`, added on first sight of `key`."""
        found = self._ids.get((kind, key))
        if found is None:
            table.append(item)
            found = self._ids[kind, key] = len(table)
        return found

    def _location(self, mapping: int, address: int, lines: tuple[tuple[int, int], ...]) -> int:
        """The id (from 1) of the location of `lines` in `mapping`, added on first sight
        with `address` (of one of the frames it stands for)."""
        found = self._ids.get(("location", (mapping, lines)))
        if found is None:
            self._mapping.extend(np.array([mapping]))
            self._address.extend(np.array([address], np.uint64))
            self._function.extend(np.array([f for f, _ in lines], np.int64))
            self._line.extend(np.array([n for _, n in lines], np.int64))
            self._lines.extend(np.array([self._function.size]))
            found = self._ids["location", (mapping, lines)] = self._mapping.size
        return found

    def named(self, sym: SymbolizedProfile, heaps: np.ndarray) -> np.ndarray:
        """The sample of each stack of the profile `sym` names (stack i of heap
        heaps[i]), added on first sight; _NO_SAMPLE for a stack of no frame."""
        merged = sym.profile.merged_from
        rows = np.arange(len(heaps)) if merged is None else merged
        lengths = np.diff(sym.offsets)
        # every row with a frame becomes a sample of the tables, in row order
        tables = pprof_tables(dataclasses.replace(sym, values=np.ones((len(lengths), 4))))
        sample_of_row = np.full(len(lengths), -1, np.int64)
        sample_of_row[lengths > 0] = np.arange(int((lengths > 0).sum()))
        functions = [
            self._intern(self.functions, "function", dataclasses.astuple(f), f)
            for f in tables.functions
        ]
        mappings = [
            self._intern(self.mappings, "mapping", (m.path, m.start, m.end, m.offset), (m, b))
            for m, b in tables.mappings
        ]
        locations = np.zeros(len(tables.locations) + 1, np.int64)
        for i, loc in enumerate(tables.locations, 1):
            lines = tuple((functions[f - 1], line) for f, line in loc.lines)
            mapping = mappings[loc.mapping - 1] if loc.mapping else 0
            locations[i] = self._location(mapping, loc.address, lines)
        assert isinstance(tables.samples, Samples)
        ids, bounds = locations[tables.samples.ids], tables.samples.bounds
        pairs, pair_of = np.unique(
            np.column_stack([heaps, sample_of_row[rows]]), axis=0, return_inverse=True
        )
        out = np.full(len(pairs), _NO_SAMPLE, np.int64)
        for k, (heap, row) in enumerate(pairs.tolist()):
            if row >= 0:
                frames = ids[bounds[row] : bounds[row + 1]]
                out[k] = self._sample(heap, frames) - 1
        return out[pair_of.reshape(-1)]

    def _sample(self, heap: int, frames: np.ndarray) -> int:
        # by a 64-bit hash of its heap and locations, not their bytes: a window's 10^5
        # samples of 40 frames each would keep 60 MB of keys
        key = ("sample", hash((heap, frames.tobytes())))
        known = self._ids.get(key)
        if known is not None:
            return known
        self._ids[key] = self.heap.size + 1
        self.heap.extend(np.array([heap]))
        self.location_ids.extend(frames)
        self.bounds.extend(np.array([self.location_ids.size]))
        for column in (self.in_use, self.allocated):
            column.extend(np.zeros((1, 2)))
        self.pushed.extend(np.zeros((1, 2), np.int64))
        return self.heap.size

    def add(self, samples: np.ndarray, change: np.ndarray) -> None:
        """Adds each row of `change` (objects and bytes in use, then allocated) to its
        sample's figures."""
        named = samples >= 0
        np.add.at(self.in_use.values, samples[named], change[named, :2])
        np.add.at(self.allocated.values, samples[named], change[named, 2:])

    def period(self, heap: int) -> PprofTables:
        """The tables of `heap`'s samples with something in use or allocated since the
        last period (the window's locations among them: compact() keeps those used):
        their allocated figures those of the period, the running totals' rounded
        difference."""
        rows = np.flatnonzero(self.heap.values == heap)
        allocated = clip_int64(np.rint(self.allocated.values[rows]))
        during = allocated - self.pushed.values[rows]
        self.pushed.values[rows] = allocated
        in_use = clip_int64(np.rint(self.in_use.values[rows]))
        values = np.column_stack([during, in_use])  # SAMPLE_TYPES' order
        taken = values.any(axis=1)
        return self._tables(rows[taken], values[taken])

    def _tables(self, rows: np.ndarray, values: np.ndarray) -> PprofTables:
        """pprof's tables of the samples `rows`: the window's locations, functions and
        mappings, of which they use some (the backend's request keeps those)."""
        ids, bounds = runs(self.location_ids.values, self.bounds.values, rows)
        return PprofTables(Samples(ids, bounds, values), self.mappings, self.locations,
                           self.functions)  # fmt: skip


class Periods:
    """The periods of one window of process `pid`, snapshot after snapshot."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.window = LiveWindow()
        self._fresh()

    def _fresh(self) -> None:
        self._samples = _Samples()
        self._sample_of = Column(np.int64)  # per stack id
        self._last_ns = 0

    def cut(self, snap: WindowSnapshot, time_ns: int) -> list[HeapPeriod]:
        """The periods of the heaps of a snapshot taken at `time_ns`."""
        change = self.window.apply(snap)
        if change.new_window:
            self._fresh()
        self._sample_of.extend(np.full(self.window.stacks - self._sample_of.size, _UNNAMED))
        heap = self.window.heap.values
        warnings = self._take(change.ids, change.after - change.before, heap[change.ids],
                              self.window.profile_of)  # fmt: skip
        heaps = sorted(snap.heaps)
        return self._periods([self.window.heap_profile(h) for h in heaps], heaps, time_ns,
                             warnings)  # fmt: skip

    def cut_files(self, profiles: list[HeapProfile], time_ns: int) -> list[HeapPeriod]:
        """The last periods, of a window's files at its end (its last snapshot): their
        stacks by the sampler's ids, those not seen before named from the files."""
        warnings: list[str] = []
        for prof in profiles:
            if prof.stack_ids is None or prof.estimates is None:  # no tree: none counted
                prof = dataclasses.replace(prof, stack_ids=np.zeros(0, np.int64),
                                           estimates=np.zeros((0, 4)))  # fmt: skip
            change = self.window.apply_file(prof)
            if change.new_window:
                self._fresh()
            self._sample_of.extend(np.full(self.window.stacks - self._sample_of.size, _UNNAMED))
            rows = {int(i): r for r, i in enumerate(change.ids.tolist())}
            heap = self.window.heap.values[change.ids]
            of = lambda which, p=prof, r=rows: _stacks_of(p, which, r)  # noqa: E731
            warnings += self._take(change.ids, change.after - change.before, heap, of)
        heaps = [HEAPS.index(p.heap) for p in profiles]
        return self._periods(profiles, heaps, time_ns, warnings)

    def _take(
        self,
        ids: np.ndarray,
        change: np.ndarray,
        heaps: np.ndarray,
        profile_of: Callable[[np.ndarray], HeapProfile],
    ) -> list[str]:
        """Adds what stacks `ids` changed to their samples, naming those not named yet
        (profile_of gives a profile of some of them); the symbolizer's warnings."""
        sample_of = self._sample_of.values
        unnamed = np.flatnonzero(sample_of[ids] == _UNNAMED)
        warnings: list[str] = []
        with kept_images():
            for a in range(0, len(unnamed), BATCH_STACKS):
                batch = unnamed[a : a + BATCH_STACKS]
                sym, said = _symbolized(profile_of(ids[batch]))
                warnings += [w for w in said if w not in warnings]
                sample_of[ids[batch]] = self._samples.named(sym, heaps[batch])
        self._samples.add(sample_of[ids], change)
        return warnings

    def _periods(
        self, profiles: list[HeapProfile], heaps: list[int], time_ns: int, warnings: list[str]
    ) -> list[HeapPeriod]:
        start_ns = profiles[0].window_ns[0] or time_ns
        begun, self._last_ns = max(self._last_ns, start_ns), time_ns
        return [
            HeapPeriod(prof, self._samples.period(heap), begun, time_ns, warnings if i == 0 else [])
            for i, (prof, heap) in enumerate(zip(profiles, heaps, strict=True))
        ]


def _stacks_of(prof: HeapProfile, ids: np.ndarray, rows: dict[int, int]) -> HeapProfile:
    """The stacks of a tree-format file that have the sampler's `ids`, as a profile."""
    which = np.array([rows[i] for i in ids.tolist()], np.int64)
    tree = prof.stack_tree
    assert isinstance(tree, StackTree)
    out = dataclasses.replace(
        prof, estimates=None, labels={}, stack_ids=None, peak=None, unreachable=None
    )
    for name in ("cur_objs", "cur_bytes", "acc_objs", "acc_bytes"):
        setattr(out, name, getattr(prof, name)[which])
    out.set_stack_tree(
        StackTree(tree.tree, tree.native[which], tree.python[which], tree.evaluation)
    )
    return out


def _symbolized(profile: HeapProfile) -> tuple[SymbolizedProfile, list[str]]:
    """The profile named with the program it says ran, its stacks merged as the
    backends show them; its own frames as addresses where that cannot be read or is
    another build now."""
    if profile.exe is not None:
        try:
            sym = symbolize(profile, profile.exe, merge=True, merge_lines=True)
        except (ElfError, BuildIdMismatch) as err:
            why = str(err)
        else:
            return sym, sym.warnings
    else:
        why = "the profile names no program"
    sym = symbolize(profile, None, merge=True, merge_lines=True)
    return sym, [*sym.warnings, f"{why}: the program's own frames are pushed as addresses"]
