"""How long a log's allocations lived, by stack (DHAT's lifetimes per allocation point),
and which died young: memray's temporary allocations, freed by the thread that made them
before it made N other allocations of the heap (N = 1 by default, which is also
heaptrack's, an allocation directly followed by its free). Lifetimes are exact for each
allocation the log holds; which are temporary only where it holds every allocation of the
heap (`-c 1`, or `--device-rate 1`): at a rate that samples, the allocations made between
one and its free are not in the log."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mem_profiler.core.errors import UserError
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.sampling import sample_weights
from mem_profiler.parser.log.analysis import NEVER, WindowLog, profile_of
from mem_profiler.parser.model.aggregate import node_frames
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile

# The upper bounds (ns) of the lifetimes' bins, each ten times the last, and their names;
# then the bins of the longer lived and of those live at the log's end.
BIN_ENDS_NS = tuple(10**k for k in range(3, 10))
BIN_NAMES = ("<1us", "<10us", "<100us", "<1ms", "<10ms", "<100ms", "<1s", ">=1s", "live")


@dataclass
class StackLifetimes:
    """The heap's allocations as a profile (acc counts: one entry per stack, by id), and
    per entry the estimated bytes of each lifetime bin (BIN_NAMES) and the temporary
    bytes (None where the log is sampled)."""

    profile: HeapProfile
    bins: np.ndarray  # float64 (stacks, len(BIN_NAMES))
    temporary: np.ndarray | None  # float64 (stacks,)


def by_stack(cap: WindowLog) -> StackLifetimes:
    """Each stack's allocations of the heap by how long they lived."""
    a = cap.allocs
    mine = a.heap == cap.heap
    ids, inverse = np.unique(a.stack[mine], return_inverse=True)
    sizes = a.size[mine].astype(np.float64)
    weight = sizes * sample_weights(sizes, cap.log.rate_of(cap.heap))  # as profile_of's
    ends, starts = a.end[mine], a.start[mine]
    lived = np.where(ends == NEVER, 0, ends - starts)
    which = np.where(
        ends == NEVER, len(BIN_NAMES) - 1, np.searchsorted(BIN_ENDS_NS, lived, side="right")
    )
    bins = np.zeros((len(ids), len(BIN_NAMES)))
    np.add.at(bins, (inverse, which), weight)
    exact = cap.log.rate_of(cap.heap) <= 1
    temporary = (
        np.bincount(inverse, weight * temporary_of(cap, 1)[mine], len(ids)) if exact else None
    )
    return StackLifetimes(profile_of(cap, mine, np.zeros_like(mine)), bins, temporary)


def temporary_of(cap: WindowLog, others: int) -> np.ndarray:
    """Per allocation of `cap`, whether it is of its heap and temporary: freed by its own
    thread before the thread made `others` other allocations of the heap."""
    a = cap.allocs
    rate = cap.log.rate_of(cap.heap)
    if rate > 1:
        rate_flag = "-c" if cap.heap_name == "host" else "--device-rate"
        raise UserError(
            f"--temporary needs every allocation of the {cap.heap_name} heap in the log, and"
            f" this one was sampled at {rate_flag} {rate}: capture with {rate_flag} 1 and"
            " --mode log (the allocations made between one and its free decide it)."
        )
    mine = np.flatnonzero(a.heap == cap.heap)
    by_thread = mine[np.lexsort((a.start[mine], a.tid[mine]))]
    found = np.zeros(len(a.heap), bool)
    tids = a.tid[by_thread]
    bounds = np.r_[0, np.flatnonzero(tids[1:] != tids[:-1]) + 1, len(tids)]
    for first, last in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        run = by_thread[first:last]  # one thread's allocations in time order
        starts, ends = a.start[run], a.end[run]
        # the thread's allocations made after this one and before its free
        between = np.searchsorted(starts, ends, side="left") - np.arange(1, len(run) + 1)
        own = (ends != NEVER) & (a.freed_by[run] == a.tid[run])
        found[run] = own & (between < others)
    return found


def temporary_profile(cap: WindowLog, others: int) -> HeapProfile:
    """The heap's temporary allocations (`temporary`) as a profile: its allocated counts."""
    found = temporary_of(cap, others)
    return profile_of(cap, found, np.zeros_like(found))


@dataclass
class Lifetimes:
    """One stack's allocations by how long they lived, estimated (unsampled)."""

    stack: list[str]  # function names, leaf first
    bytes: float  # allocated
    samples: int
    bins: list[float]  # bytes by BIN_NAMES
    temporary: float | None  # bytes; None where the log is sampled


def lifetime_rows(
    table: StackLifetimes, sym: SymbolizedProfile, full_names: bool
) -> list[Lifetimes]:
    """The stacks of `table`, symbolized (`sym`, of table.profile), as rows, most bytes
    allocated first; stacks that read the same once symbolized are one row (leak_sites)."""
    names, nodes = node_frames(sym, full_names=full_names)
    frames, bounds = nodes.tolist(), sym.offsets.tolist()
    allocated, samples = sym.value("alloc_space"), table.profile.acc_objs
    rows: dict[tuple[str, ...], Lifetimes] = {}
    for i in range(len(allocated)):
        stack = tuple(names[f] for f in frames[bounds[i] : bounds[i + 1]])
        row = rows.setdefault(stack, Lifetimes(list(stack), 0.0, 0, [0.0] * len(BIN_NAMES), None))
        row.bytes += float(allocated[i])
        row.samples += int(samples[i])
        row.bins = [b + float(v) for b, v in zip(row.bins, table.bins[i], strict=True)]
        if table.temporary is not None:
            row.temporary = (row.temporary or 0.0) + float(table.temporary[i])
    return sorted(rows.values(), key=lambda row: (-row.bytes, row.stack))
