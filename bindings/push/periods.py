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
from mem_profiler.parser.common.arrays import clip_int64, give_back_freed, runs
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
from mem_profiler.parser.symbols.resolver import kept_images
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile, symbolize

# Stacks named at once: what bounds the symbolizer's memory on a window's first period
# (a PyTorch program's 370,000 stacks are twelve batches: 7.6 s and 464 MB at the peak,
# where batches of 65,536 took 7.8 s and 571 MB).
BATCH_STACKS = 32768
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

    def _locations(
        self, table: LocationTable, functions: np.ndarray, mappings: np.ndarray
    ) -> np.ndarray:
        """Our id (from 1) of each location of `table` (its function and mapping ids, from
        1, into `functions` and `mappings`, ours), a location being its lines in its
        mapping; those not seen before added, with the address of one of the frames they
        stand for."""
        mapping = np.r_[0, mappings][table.mapping].tolist()
        function = functions[table.function - 1].tolist()
        line, bounds = table.line.tolist(), table.bounds.tolist()
        out = np.zeros(len(mapping) + 1, np.int64)
        new: list[int] = []
        for i in range(len(mapping)):
            a, b = bounds[i], bounds[i + 1]
            key = ("location", (mapping[i], tuple(zip(function[a:b], line[a:b], strict=True))))
            found = self._ids.get(key)
            if found is None:
                found = self._ids[key] = self._mapping.size + len(new) + 1
                new.append(i)
            out[i + 1] = found
        if new:
            added = table.taken(np.array(new))
            self._mapping.extend(np.r_[0, mappings][added.mapping])
            self._address.extend(added.address)
            self._function.extend(functions[added.function - 1])
            self._line.extend(added.line)
            self._lines.extend(self._lines.values[-1] + added.bounds[1:])
        return out

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
            self._intern(
                self.functions, "function", (f.name, f.system_name, f.file, f.start_line), f
            )
            for f in tables.functions
        ]
        mappings = [
            self._intern(self.mappings, "mapping", (m.path, m.start, m.end, m.offset), (m, b))
            for m, b in tables.mappings
        ]
        locations = self._locations(
            LocationTable.of(tables.locations),
            np.array(functions, np.int64),
            np.array(mappings, np.int64),
        )
        assert isinstance(tables.samples, Samples)
        pairs, pair_of = np.unique(
            np.column_stack([heaps, sample_of_row[rows]]), axis=0, return_inverse=True
        )
        out = np.full(len(pairs), _NO_SAMPLE, np.int64)
        framed = pairs[:, 1] >= 0
        ids, bounds = runs(locations[tables.samples.ids], tables.samples.bounds, pairs[framed, 1])
        out[framed] = self._samples(pairs[framed, 0], ids, bounds) - 1
        return out[pair_of.reshape(-1)]

    def _samples(self, heaps: np.ndarray, ids: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """Our id (from 1) of the sample of each run of location ids (ids[bounds[i]:
        bounds[i + 1]], of heap heaps[i]), those not seen before added. Samples are known
        by a 128-bit hash of their heap and locations, not their bytes: a window's 10^5
        samples of 40 frames each would keep 60 MB of keys."""
        keys = _run_hashes(heaps, ids, bounds)
        out = np.zeros(len(keys), np.int64)
        new: list[int] = []
        for i, key in enumerate(keys):
            found = self._ids.get(("sample", key))
            if found is None:
                found = self._ids["sample", key] = self.heap.size + len(new) + 1
                new.append(i)
            out[i] = found
        if new:
            which = np.array(new)
            added, added_bounds = runs(ids, bounds, which)
            self.heap.extend(heaps[which])
            self.location_ids.extend(added)
            self.bounds.extend(self.bounds.values[-1] + added_bounds[1:])
            for column in (self.in_use, self.allocated):
                column.extend(np.zeros((len(new), 2)))
            self.pushed.extend(np.zeros((len(new), 2), np.int64))
        return out

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
        samples = Samples(ids, bounds, values)
        return PprofTables(samples, self.mappings, self.locations, self.functions)


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
        heap = self.window.heap.values[change.ids]
        delta = change.after - change.before
        warnings = self._take(change.ids, delta, heap, self.window.profile_of)
        heaps = sorted(snap.heaps)
        profiles = [self.window.heap_profile(h) for h in heaps]
        return self._periods(profiles, heaps, time_ns, warnings)

    def cut_files(self, profiles: list[HeapProfile], time_ns: int) -> list[HeapPeriod]:
        """The last periods, of a window's files at its end (its last snapshot): their
        stacks by the sampler's ids, those not seen before named from the files."""
        warnings: list[str] = []
        for prof in profiles:
            if prof.stack_ids is None or prof.estimates is None:  # no tree: none counted
                none = np.zeros(0, np.int64)
                prof = dataclasses.replace(prof, stack_ids=none, estimates=np.zeros((0, 4)))
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
        if len(unnamed):
            give_back_freed()  # the symbol tables' and the symbolizer's memory
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


# Two odd multipliers: a run's two hashes are the sums of its ids times their powers.
_HASH_BASES = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F)


def _run_hashes(heaps: np.ndarray, ids: np.ndarray, bounds: np.ndarray) -> list[int]:
    """A 128-bit hash of each run of ids (ids[bounds[i]:bounds[i + 1]], none empty) and
    its heap, all at once: two polynomial hashes modulo 2^64 of its ids, each mixed with
    its length and heap."""
    lengths = np.diff(bounds)
    position = np.arange(len(ids)) - np.repeat(bounds[:-1], lengths)
    hashes = []
    with np.errstate(over="ignore"):
        for base in _HASH_BASES:
            powers = np.full(int(lengths.max(initial=1)), np.uint64(base))
            powers = np.multiply.accumulate(powers, dtype=np.uint64)
            terms = (ids.astype(np.uint64) + np.uint64(1)) * powers[position]
            h = np.add.reduceat(terms, bounds[:-1]) if len(ids) else np.zeros(0, np.uint64)
            h ^= lengths.astype(np.uint64) * np.uint64(base) + heaps.astype(np.uint64)
            hashes.append(h.tolist())
    return [a << 64 | b for a, b in zip(*hashes, strict=True)]


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
