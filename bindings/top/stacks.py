"""Per-stack figures of a live view (mem_profiler top) from successive snapshots of one
capture window: what each stack holds, how fast that grew over the last interval and how
fast it allocates, with each stack symbolized once however many snapshots show it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mem_profiler import procfs
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.sampling import sample_values
from mem_profiler.parser.model.focus import some_stacks
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
    stack; a snapshot's addresses are symbolized only the first time they are seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.binary: str | None = None  # the program, for its symbols: _program
        self._key_of: dict[tuple[str, bytes], int] = {}  # (heap, addresses) -> stack key
        self._keys: dict[tuple[str, tuple[str, ...]], int] = {}  # (heap, frames) -> key
        self._in_use = np.zeros(0)  # by key, at the last snapshot
        self._allocated = np.zeros(0)
        self._time_ns: int | None = None
        self.warnings: list[str] = []  # the symbolizer's, each once

    def update(self, profiles: list[HeapProfile], time_ns: int) -> Refresh | None:
        """The Refresh of this snapshot (the heaps' profiles, written at time_ns) against
        the last one; None for the first, which is only the baseline."""
        keys = [self._stack_keys(p) for p in profiles]
        n = len(self._keys)
        in_use, allocated = np.zeros(n), np.zeros(n)
        for prof, key in zip(profiles, keys, strict=True):
            in_use += np.bincount(key, weights=sample_values(prof, "inuse_space"), minlength=n)
            allocated += np.bincount(key, weights=sample_values(prof, "alloc_space"), minlength=n)
        before_in_use = np.r_[self._in_use, np.zeros(n - len(self._in_use))]
        before_allocated = np.r_[self._allocated, np.zeros(n - len(self._allocated))]
        last_ns, self._time_ns = self._time_ns, time_ns
        self._in_use, self._allocated = in_use, allocated
        if last_ns is None or time_ns <= last_ns:
            return None
        interval_s = (time_ns - last_ns) / 1e9
        growth = (in_use - before_in_use) / interval_s
        # A stack first seen now allocated all it has in the interval.
        alloc_rate = (allocated - before_allocated) / interval_s
        heaps = []
        for prof, key in zip(profiles, keys, strict=True):
            mine = np.unique(key)
            heaps.append(
                HeapTotals(
                    prof.heap,
                    float(in_use[mine].sum()),
                    float(growth[mine].sum()),
                    float(alloc_rate[mine].sum()),
                )
            )
        dropped = max((p.dropped_samples for p in profiles), default=0)
        return Refresh(
            time_ns, interval_s, heaps, dropped, list(self._keys), in_use, growth, alloc_rate
        )

    def _stack_keys(self, prof: HeapProfile) -> np.ndarray:
        """The key of each stack of prof, naming the stacks not seen before."""
        bounds = prof.offsets.tolist()
        addresses = prof.addrs.tobytes()
        raw = [
            (prof.heap, addresses[8 * a : 8 * b]) for a, b in zip(bounds, bounds[1:], strict=False)
        ]
        new = [i for i, r in enumerate(raw) if r not in self._key_of]
        if new:
            self.binary = self.binary or self._program(prof)
            sym = symbolize(some_stacks(prof, np.array(new, np.int64)), self.binary, lines=True)
            self.warnings += [w for w in sym.warnings if w not in self.warnings]
            for i, frames in zip(new, _named_stacks(sym), strict=True):
                self._key_of[raw[i]] = self._keys.setdefault((prof.heap, frames), len(self._keys))
        return np.fromiter((self._key_of[r] for r in raw), np.int64, len(raw))

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
