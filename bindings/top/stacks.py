"""Per-stack figures of a live view (mem_profiler top) from successive snapshots of one
capture window: what each stack holds, how fast that grew over the last interval and how
fast it allocates, with each stack symbolized once however many snapshots show it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mem_profiler.control import procfs
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.read.live_window import FIGURES, Column, LiveWindow
from mem_profiler.parser.read.window_snapshot import WindowSnapshot
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile, symbolize
from mem_profiler.top.order import SORT_KEYS

MIN_FRAMES = 2  # the allocating frame and its caller, more where stacks need them to differ


@dataclass
class StackRow:
    """One stack of one heap: its frames named, allocator frames left out."""

    heap: str
    frames: tuple[str, ...]  # `function path:line` (frame_label), the allocating frame first
    in_use: float  # bytes (estimated) allocated in the window and live now
    growth: float  # bytes/s: the change of in_use over the last interval
    alloc_rate: float  # bytes/s allocated over the last interval


@dataclass
class HeapTotals:
    heap: str
    in_use: float
    growth: float
    alloc_rate: float


@dataclass
class Refresh:
    """The figures of one snapshot against the one before, by stack key."""

    time_ns: int  # when the target wrote the snapshot (CLOCK_REALTIME)
    interval_s: float  # since the snapshot before
    heaps: list[HeapTotals]  # the heaps of the snapshot, host first
    dropped_samples: int  # the window's samples the sampler's tables had no room for
    stacks: list[tuple[str, tuple[str, ...]]]  # (heap, frames) of each key
    in_use: np.ndarray  # float64 by key, as StackRow's
    growth: np.ndarray
    alloc_rate: np.ndarray

    def top(self, sort: str, count: int, heap: str | None = None) -> list[StackRow]:
        """The `count` stacks (of `heap`, or of every heap) with the most in use,
        allocation rate or growth (SORT_KEYS), most first, then by in use; stacks with
        nothing in use and nothing allocated in the interval are left out."""
        if sort not in SORT_KEYS:
            raise ValueError(f"unknown sort key {sort!r}, expected one of {SORT_KEYS}")
        value = {"inuse": self.in_use, "alloc": self.alloc_rate, "growth": self.growth}[sort]
        shown = (self.in_use != 0) | (self.alloc_rate != 0)
        if heap is not None:
            shown &= np.array([h == heap for h, _ in self.stacks], bool)
        keys = np.flatnonzero(shown)
        keys = keys[np.lexsort((keys, -self.in_use[keys], -value[keys]))][:count]
        return [
            StackRow(*self.stacks[k], self.in_use[k], self.growth[k], self.alloc_rate[k])
            for k in keys.tolist()
        ]


class LiveStacks:
    """Turns each snapshot into a Refresh. Stacks are told apart by what they name (heap,
    functions and source lines), so two sets of addresses that name the same calls are one
    stack; a stack of the window is named the first time it has counts, and a refresh
    counts only the stacks whose figures moved."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.binary: str | None = None  # the program, for its symbols: _program
        self.window = LiveWindow()
        self._fresh()
        self.warnings: list[str] = []  # the symbolizer's, each once

    def _fresh(self) -> None:
        self._key_of = Column(np.int64)  # per stack id: its key, -1 before it is named
        self._keys: dict[tuple[str, tuple[str, ...]], int] = {}  # (heap, frames) -> key
        self._heap_of = Column(np.int64)  # per key: its heap's index into HEAPS
        self._in_use = Column(np.float64)  # per key, now
        self._allocated = Column(np.float64)
        self._time_ns: int | None = None
        self._before: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, snap: WindowSnapshot, time_ns: int) -> Refresh | None:
        """The Refresh of this snapshot (taken at time_ns) against the last one; None for
        the first, which is only the baseline."""
        change = self.window.apply(snap)
        if change.new_window:
            self._fresh()
        self._key_of.extend(np.full(self.window.stacks - self._key_of.size, -1))
        keys = self._keys_of(change.ids)
        in_use, allocated = self._in_use.values, self._allocated.values
        delta = change.after - change.before
        np.add.at(in_use, keys, delta[:, FIGURES.index("cur_bytes")])
        np.add.at(allocated, keys, delta[:, FIGURES.index("acc_bytes")])
        before, self._before = self._before, (in_use.copy(), allocated.copy())
        last_ns, self._time_ns = self._time_ns, time_ns
        if before is None or last_ns is None or time_ns <= last_ns:
            return None
        n = len(in_use)
        before_in_use, before_allocated = (np.r_[b, np.zeros(n - len(b))] for b in before)
        interval_s = (time_ns - last_ns) / 1e9
        growth = (in_use - before_in_use) / interval_s
        # A stack first seen now allocated all it has in the interval.
        alloc_rate = (allocated - before_allocated) / interval_s
        heaps = []
        heap_of = self._heap_of.values
        for heap in sorted(snap.heaps):
            mine = heap_of == heap
            heaps.append(
                HeapTotals(
                    HEAPS[heap],
                    float(in_use[mine].sum()),
                    float(growth[mine].sum()),
                    float(alloc_rate[mine].sum()),
                )
            )
        drops = self.window.head.drops
        return Refresh(
            time_ns,
            interval_s,
            heaps,
            drops.samples if drops is not None else 0,
            list(self._keys),
            in_use.copy(),
            growth,
            alloc_rate,
        )

    def _keys_of(self, ids: np.ndarray) -> np.ndarray:
        """The key of each of the stacks `ids`, naming those not named yet."""
        key_of = self._key_of.values
        new = ids[key_of[ids] < 0]
        if len(new):
            prof = self.window.profile_of(new)
            self.binary = self.binary or self._program(prof)
            sym = symbolize(prof, self.binary, lines=True)
            self.warnings += [w for w in sym.warnings if w not in self.warnings]
            heaps = self.window.heap.values[new].tolist()
            for i, heap, frames in zip(new.tolist(), heaps, _named_stacks(sym), strict=True):
                key = self._keys.setdefault((HEAPS[heap], frames), len(self._keys))
                if key == self._heap_of.size:
                    self._heap_of.extend(np.array([heap]))
                    self._in_use.extend(np.zeros(1))
                    self._allocated.extend(np.zeros(1))
                key_of[i] = key
        return key_of[ids]

    def _program(self, prof: HeapProfile) -> str:
        """/proc/<pid>/exe, which opens the program even once its file was replaced, where
        it is the program the profile names; else that one (under qemu-user the process
        runs the emulator, the profile names the program it runs)."""
        if prof.exe and procfs.exe_path(self.pid) not in (prof.exe, f"{prof.exe} (deleted)"):
            return prof.exe
        return procfs.exe_file(self.pid)


def _named_stacks(sym: SymbolizedProfile) -> list[tuple[str, ...]]:
    """Each stack's frames with their lines, labelled as in the reports (frame_label)."""
    labels = sym.location_labels(lines=True)
    frames, bounds = sym.frames.tolist(), sym.offsets.tolist()
    return [
        tuple(labels[loc] for loc in frames[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)
    ]


def distinct_frames(rows: list[StackRow]) -> list[tuple[str, ...]]:
    """Each row's first frames: MIN_FRAMES of them, or as many more as it takes for no
    other row of its heap to begin with the same ones (all of them at most)."""
    out = []
    for row in rows:
        need = MIN_FRAMES
        for other in rows:
            if other is not row and other.heap == row.heap:
                common = next(
                    (
                        i
                        for i, (a, b) in enumerate(zip(row.frames, other.frames, strict=False))
                        if a != b
                    ),
                    min(len(row.frames), len(other.frames)),
                )
                need = max(need, common + 1)
        out.append(row.frames[:need])
    return out
