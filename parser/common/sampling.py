"""Unsampling of heap_v2 counts (jeprof AdjustSamples, Go pprof scaleHeapSample)."""

from __future__ import annotations

import numpy as np

from mem_profiler.core.profile import HeapProfile
from mem_profiler.core.units import format_amount

SAMPLE_INDEXES = ("inuse_space", "inuse_objects", "alloc_space", "alloc_objects")


def scale_factors(objs: np.ndarray, nbytes: np.ndarray, rate: int) -> np.ndarray:
    """Per entry the weight of a sample of the stack's average size (sample_weights of
    bytes/objs); 0 where objs is 0. Each sample then stands for 1/p allocations of the
    average size of its stack (jeprof's AdjustSamples, pprof's scaleHeapSample)."""
    objs = np.asarray(objs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        average = np.where(objs == 0, 0.0, np.asarray(nbytes, dtype=np.float64) / objs)
    return np.where(objs == 0, 0.0, sample_weights(average, rate))


def sample_weights(sizes: np.ndarray, rate: int) -> np.ndarray:
    """How many allocations one sample of each size stands for: 1 / (1 - exp(-s/rate)),
    the inverse of its chance to be sampled; 1 at rate 1 and for zero-size blocks."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if rate <= 1:
        return np.ones(len(sizes))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sizes > 0, 1.0 / -np.expm1(-sizes / rate), 1.0)


def unsample(objs: np.ndarray, nbytes: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimated (objects, bytes) allocated, as float64 arrays."""
    scale = scale_factors(objs, nbytes, rate)
    return np.asarray(objs) * scale, np.asarray(nbytes) * scale


def index_unit(index: str) -> str:
    """What a sample index counts: "objects" (inuse_objects, alloc_objects) or "bytes"."""
    return "objects" if index.endswith("_objects") else "bytes"


def index_column(index: str) -> int:
    """Position of a sample index in SAMPLE_INDEXES; ValueError for an unknown one."""
    if index not in SAMPLE_INDEXES:
        raise ValueError(f"unknown sample index {index!r}, expected one of {SAMPLE_INDEXES}")
    return SAMPLE_INDEXES.index(index)


def estimates(prof: HeapProfile, live: bool) -> tuple[np.ndarray, np.ndarray]:
    """Unsampled (objects, bytes) of each stack, in use (`live`) or allocated: the sums
    of the samples' weights where the file records them (`# estimate:` lines, unbiased
    whatever the mix of sizes in a stack), else the counts scaled by the stack's average
    size, as jeprof does (files of jemalloc, of older samplers)."""
    if prof.estimates is not None:
        first = 0 if live else 2
        return prof.estimates[:, first], prof.estimates[:, first + 1]
    objs, nbytes = (prof.cur_objs, prof.cur_bytes) if live else (prof.acc_objs, prof.acc_bytes)
    return unsample(objs, nbytes, prof.rate)


def sample_values(prof: HeapProfile, index: str = "inuse_space") -> np.ndarray:
    """The unsampled value of each stack for one sample index (see SAMPLE_INDEXES)."""
    index_column(index)
    kind, unit = index.split("_")
    est_objs, est_bytes = estimates(prof, live=kind == "inuse")
    return est_bytes if unit == "space" else est_objs


def stack_values(prof: HeapProfile) -> np.ndarray:
    """float64 (stacks, len(SAMPLE_INDEXES)): every sample index's value of each stack."""
    return np.column_stack([sample_values(prof, index) for index in SAMPLE_INDEXES])


def drop_note(prof: HeapProfile) -> str | None:
    """What the samples the sampler had no room for do to the figures, in one sentence;
    None when none were dropped."""
    drops = prof.drops
    if drops is None:
        return (
            f"Dropped {prof.dropped_samples:,} samples (the sampler's tables were full):"
            " the figures are low."
            if prof.dropped_samples
            else None
        )
    if not drops.samples:
        return None
    causes = [
        f"{n:,} because {why}"
        for n, why in (
            (
                drops.stack_table,
                "the stack table was full (raise MEMPROF_STACK_MEMORY): missing from every figure",
            ),
            (
                drops.live_table,
                "the live table was full (raise MEMPROF_MAX_LIVE): counted as "
                "allocated, missing from the in-use figures",
            ),
            (drops.memory, "memory ran short: missing from every figure"),
        )
        if n
    ]
    return (
        f"Dropped {drops.samples:,} samples standing for about "
        f"{format_amount(drops.bytes, 'bytes')} allocated: {'; '.join(causes)}."
    )


def python_frames_note(prof: HeapProfile) -> str | None:
    """What the Python frames the sampler had no room for do to a report, in one
    sentence; None when it left none out."""
    if not prof.python_frames_left_out:
        return None
    return (
        f"Left out {prof.python_frames_left_out:,} Python frames of stacks, the sampler's"
        " tables of Python functions and lines being full (raise --stack-memory,"
        " MEMPROF_STACK_MEMORY): what Python frames tell, their functions and the"
        " categories, is short."
    )
