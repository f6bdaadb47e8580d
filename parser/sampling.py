"""Unsampling of heap_v2 counts (jeprof AdjustSamples, Go pprof scaleHeapSample)."""

from __future__ import annotations

import numpy as np

from mem_profiler.parser.heapfile import HeapProfile

SAMPLE_INDEXES = ("inuse_space", "inuse_objects", "alloc_space", "alloc_objects")


def scale_factors(objs: np.ndarray, nbytes: np.ndarray, rate: int) -> np.ndarray:
    """Per entry `1 / (1 - exp(-(bytes/objs)/rate))`; 0 where objs is 0, 1 when rate <= 1.

    An allocation of size X is sampled with probability 1 - exp(-X/rate), so each
    sample stands for 1/p allocations of the average size of its stack. Entries with
    objects but no bytes (zero-size allocations) keep scale 1.
    """
    objs = np.asarray(objs, dtype=np.float64)
    nbytes = np.asarray(nbytes, dtype=np.float64)
    if rate <= 1:
        return np.where(objs != 0, 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 1.0 / -np.expm1(-(nbytes / objs) / rate)
    return np.where(objs == 0, 0.0, np.where(nbytes == 0, 1.0, scale))


def unsample(objs: np.ndarray, nbytes: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimated (objects, bytes) allocated, as float64 arrays."""
    scale = scale_factors(objs, nbytes, rate)
    return np.asarray(objs) * scale, np.asarray(nbytes) * scale


def index_column(index: str) -> int:
    """Position of a sample index in SAMPLE_INDEXES; ValueError for an unknown one."""
    if index not in SAMPLE_INDEXES:
        raise ValueError(f"unknown sample index {index!r}, expected one of {SAMPLE_INDEXES}")
    return SAMPLE_INDEXES.index(index)


def sample_values(prof: HeapProfile, index: str = "inuse_space") -> np.ndarray:
    """The unsampled value of each stack for one sample index (see SAMPLE_INDEXES)."""
    index_column(index)
    kind, unit = index.split("_")
    objs, nbytes = ((prof.cur_objs, prof.cur_bytes) if kind == "inuse"
                    else (prof.acc_objs, prof.acc_bytes))
    est_objs, est_bytes = unsample(objs, nbytes, prof.rate)
    return est_bytes if unit == "space" else est_objs


def stack_values(prof: HeapProfile) -> np.ndarray:
    """float64 (stacks, len(SAMPLE_INDEXES)): every sample index's value of each stack."""
    return np.column_stack([sample_values(prof, index) for index in SAMPLE_INDEXES])
