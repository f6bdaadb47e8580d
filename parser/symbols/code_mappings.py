"""Which of a profile's file-backed code mappings holds each address: the one lookup
that symbolizing, pprof's mappings and the Python view share."""

from __future__ import annotations

import numpy as np

from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.profile import HeapProfile


def code_mappings(profile: HeapProfile) -> list[MemoryMapping]:
    """The executable mappings backed by a file, sorted by address. (Anonymous executable
    memory, JIT code, has no file: its frames stay addresses.)"""
    return sorted((m for m in profile.mappings if m.executable and m.path), key=lambda m: m.start)


def mapping_index(maps: list[MemoryMapping], addrs: np.ndarray) -> np.ndarray:
    """Index into `maps` (sorted by start) of the mapping holding each address, else -1."""
    starts = np.array([m.start for m in maps], np.uint64)
    ends = np.array([m.end for m in maps], np.uint64)
    which = np.searchsorted(starts, addrs, side="right").astype(np.int64) - 1
    inside = which >= 0
    inside[inside] = addrs[inside] < ends[which[inside]]
    return np.where(inside, which, -1)
