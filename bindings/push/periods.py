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
        # per (heap, stack's addresses): the window's allocated objects and bytes so far,
        # rounded, as the period before ended
        self._allocated: dict[tuple[str, bytes], np.ndarray] = {}

    def cut(self, profiles: list[HeapProfile], time_ns: int) -> list[HeapPeriod]:
        """The periods each heap of a snapshot taken at `time_ns` ends (a window's
        files at its end are its last snapshot)."""
        start_ns = profiles[0].window_ns[0] or time_ns
        if start_ns != self._window_start:  # a new window: its totals start afresh
            self._window_start, self._last_ns = start_ns, start_ns
            self._allocated.clear()
        begun, self._last_ns = self._last_ns, time_ns
        out = []
        for profile in profiles:
            sym, warnings = self._symbolized(profile)
            assert sym.values is not None  # SymbolizedProfile.__post_init__ fills it in
            values = np.rint(sym.values)
            addrs, bounds = profile.addrs, profile.offsets.tolist()
            assert len(bounds) - 1 == len(values)  # symbolize keeps a row per stack
            for row in range(len(values)):
                key = (profile.heap, addrs[bounds[row] : bounds[row + 1]].tobytes())
                total = values[row, ALLOCATED].copy()
                before = self._allocated.get(key)
                self._allocated[key] = total
                if before is not None:
                    values[row, ALLOCATED] = total - before
            sym = dataclasses.replace(sym, values=values)
            out.append(HeapPeriod(profile, sym, pprof_tables(sym), begun, time_ns, warnings))
        return out

    def _symbolized(self, profile: HeapProfile) -> tuple[SymbolizedProfile, list[str]]:
        """The profile named with the program it says ran; its own frames as addresses
        where that cannot be read or is another build now."""
        if profile.exe is not None:
            try:
                sym = symbolize(profile, profile.exe)
            except (ElfError, BuildIdMismatch) as err:
                why = str(err)
            else:
                return sym, sym.warnings
        else:
            why = "the profile names no program"
        sym = symbolize(profile, None)
        return sym, [*sym.warnings, f"{why}: the program's own frames are pushed as addresses"]
