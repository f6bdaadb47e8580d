"""Allocations by how long they lived, per stack (DHAT's lifetimes per allocation point),
and those that died young (memray's and heaptrack's temporary allocations): the table the
lifetimes report shows, from an event log (parser/log/lifetimes.py) or from what a
table-mode window counted of its sampled frees (here), and its rows once symbolized."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.sampling import estimates
from mem_profiler.parser.model.aggregate import node_frames
from mem_profiler.parser.model.focus import some_stacks
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile


@dataclass
class StackLifetimes:
    """The heap's allocations as a profile (acc counts), and per stack the estimated bytes
    of each lifetime bin (LIFETIME_BINS) and the temporary bytes (None where they are
    not known: a sampled event log)."""

    profile: HeapProfile
    bins: np.ndarray  # float64 (stacks, len(LIFETIME_BINS))
    temporary: np.ndarray | None  # float64 (stacks,)


def _per_sample(profile: HeapProfile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per stack, the objects and the bytes that one of its allocated samples stands for,
    and the bytes one of its sampled bytes does (the stack's estimates over its counts):
    exact for a stack of one size, the mean of its sizes' weights otherwise."""
    est_objs, est_bytes = estimates(profile, live=False)
    objs, sizes = profile.acc_objs, profile.acc_bytes
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            np.where(objs > 0, est_objs / objs, 0.0),
            np.where(objs > 0, est_bytes / objs, 0.0),
            np.where(sizes > 0, est_bytes / sizes, 0.0),
        )


def table_lifetimes(profile: HeapProfile) -> StackLifetimes:
    """A table-mode window's allocations by how long they lived: its sampled frees by
    lifetime, and those still live at its end, each sample weighed as its stack's are."""
    assert profile.frees is not None
    _, per_sample, per_byte = _per_sample(profile)
    bins = np.column_stack(
        [profile.frees.by_lifetime * per_sample[:, None], estimates(profile, live=True)[1]]
    )
    return StackLifetimes(profile, bins, profile.frees.temporary[:, 1] * per_byte)


def table_temporary(profile: HeapProfile) -> HeapProfile:
    """A table-mode window's temporary allocations as a profile: their allocated counts."""
    assert profile.frees is not None
    objs_per_sample, _, per_byte = _per_sample(profile)
    samples, sizes = profile.frees.temporary.T
    counts = np.zeros_like(samples)
    temporary = dataclasses.replace(
        profile,
        cur_objs=counts,
        cur_bytes=counts,
        acc_objs=samples,
        acc_bytes=sizes,
        estimates=np.column_stack([counts, counts, samples * objs_per_sample, sizes * per_byte]),
        peak=None,
        unreachable=None,
        frees=None,
    )
    return some_stacks(temporary, np.flatnonzero(samples > 0))


@dataclass
class Lifetimes:
    """One stack's allocations by how long they lived, estimated (unsampled)."""

    stack: list[str]  # function names, leaf first
    bytes: float  # allocated
    samples: int
    bins: list[float]  # bytes by LIFETIME_BINS
    temporary: float | None  # bytes; None where not known


def lifetime_rows(
    table: StackLifetimes, sym: SymbolizedProfile, full_names: bool
) -> list[Lifetimes]:
    """The stacks of `table`, symbolized (`sym`, of table.profile), as rows, most bytes
    allocated first; stacks that read the same once symbolized are one row (leak_sites)."""
    names, nodes = node_frames(sym, full_names=full_names)
    frames, bounds = nodes.tolist(), sym.offsets.tolist()
    allocated, samples = sym.value("alloc_space"), table.profile.acc_objs
    bins = table.bins.shape[1]
    rows: dict[tuple[str, ...], Lifetimes] = {}
    for i in range(len(allocated)):
        stack = tuple(names[f] for f in frames[bounds[i] : bounds[i + 1]])
        row = rows.setdefault(stack, Lifetimes(list(stack), 0.0, 0, [0.0] * bins, None))
        row.bytes += float(allocated[i])
        row.samples += int(samples[i])
        row.bins = [b + float(v) for b, v in zip(row.bins, table.bins[i], strict=True)]
        if table.temporary is not None:
            row.temporary = (row.temporary or 0.0) + float(table.temporary[i])
    return sorted(rows.values(), key=lambda row: (-row.bytes, row.stack))
