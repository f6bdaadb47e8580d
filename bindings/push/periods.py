"""A window's snapshots cut into periods: each heap as pprof's tables for the time since
the snapshot before, its in-use figures as they are at the end of the period and its
allocated ones what was allocated during it. The allocated figures are differences of
the window's running totals rounded once, so the periods of a window add up to its
total exactly: nothing is counted twice or lost between pushes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mem_profiler.core.errors import BuildIdMismatch, ElfError
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.sampling import index_column
from mem_profiler.parser.report.pprof import PprofTables, pprof_tables
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile, symbolize

ALLOCATED = [index_column("alloc_objects"), index_column("alloc_space")]


@dataclass
class HeapPeriod:
    """One heap of one process over one period."""

    profile: HeapProfile  # the snapshot's (who ran, the heap, its rate)
    sym: SymbolizedProfile  # values: in use at the end, allocated during the period
    tables: PprofTables
    start_ns: int
    end_ns: int
    warnings: list[str]


class Periods:
    """The periods of one window of process `pid`, snapshot after snapshot."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._window_start: int | None = None
        self._last_ns = 0
        # per (heap, stack's frames as _stack_keys numbers them): the window's allocated
        # objects and bytes so far, rounded, as the period before ended
        self._allocated: dict[tuple[str, bytes], tuple[float, ...]] = {}
        self._frame_ids: dict[tuple[str, str | None, tuple[str, int] | None], int] = {}

    def cut(self, profiles: list[HeapProfile], time_ns: int) -> list[HeapPeriod]:
        """The periods each heap of a snapshot taken at `time_ns` ends (a window's
        files at its end are its last snapshot)."""
        start_ns = profiles[0].window_ns[0] or time_ns
        if start_ns != self._window_start:  # a new window: its totals start afresh
            self._window_start, self._last_ns = start_ns, start_ns
            self._allocated.clear()
            self._frame_ids.clear()
        begun, self._last_ns = self._last_ns, time_ns
        out = []
        for profile in profiles:
            sym, warnings = self._symbolized(profile)
            assert sym.values is not None  # SymbolizedProfile.__post_init__ fills it in
            values = np.rint(sym.values)
            self._allocated_since(profile.heap, sym, values)
            sym = dataclasses.replace(sym, values=values)
            out.append(HeapPeriod(profile, sym, pprof_tables(sym), begun, time_ns, warnings))
        return out

    def _allocated_since(self, heap: str, sym: SymbolizedProfile, values: np.ndarray) -> None:
        """Turn the window's allocated totals in `values` (a row per stack of `sym`) into
        what was allocated since the snapshot before: by what each stack shows, which the
        snapshots' stacks, merged anew each time, keep. Stacks that show the same frames
        are one: their difference goes on the first of them."""
        first: dict[bytes, int] = {}  # each key's index, in the order first met
        group = np.array(
            [first.setdefault(key, len(first)) for key in self._stack_keys(sym)], np.int64
        )
        totals = np.zeros((len(first), len(ALLOCATED)))
        np.add.at(totals, group, values[:, ALLOCATED])
        rows = np.zeros(len(first), np.int64)
        rows[group[::-1]] = np.arange(len(group))[::-1]  # each key's first row
        before = np.array(
            [self._allocated.get((heap, key), (0.0,) * len(ALLOCATED)) for key in first]
        )
        self._allocated.update(
            ((heap, key), tuple(total)) for key, total in zip(first, totals.tolist(), strict=True)
        )
        values[:, ALLOCATED] = 0
        values[rows[:, None], ALLOCATED] = totals - before.reshape(totals.shape)

    def _stack_keys(self, sym: SymbolizedProfile) -> list[bytes]:
        """Per stack, its frames as numbers that stand for the same function, Python
        file and line in every snapshot of the window."""
        files = sym.python_files or [None] * len(sym.functions)
        func_of = sym.func_of.tolist()
        ids = np.array(
            [
                self._frame_ids.setdefault(
                    (sym.functions[f], files[f], sym.where[loc]), len(self._frame_ids)
                )
                for loc, f in enumerate(func_of)
            ],
            np.int64,
        )
        frames, bounds = ids[sym.frames], sym.offsets.tolist()
        return [frames[bounds[i] : bounds[i + 1]].tobytes() for i in range(len(bounds) - 1)]

    def _symbolized(self, profile: HeapProfile) -> tuple[SymbolizedProfile, list[str]]:
        """The profile named with the program it says ran; its own frames as addresses
        where that cannot be read or is another build now."""
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
