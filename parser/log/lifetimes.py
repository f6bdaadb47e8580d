"""How long a log's allocations lived, by stack (DHAT's lifetimes per allocation point),
and which died young: memray's temporary allocations, freed by the thread that made them
before it made N other allocations of the heap (N = 1 by default, which is also
heaptrack's, an allocation directly followed by its free). Lifetimes are exact for each
allocation the log holds; which are temporary only where it holds every allocation of the
heap (`-c 1`, or `--device-rate 1`): at a rate that samples, the allocations made between
one and its free are not in the log."""

from __future__ import annotations

import numpy as np

from mem_profiler.core.errors import UserError
from mem_profiler.core.profile import LIFETIME_BINS, LIFETIME_ENDS_NS, HeapProfile
from mem_profiler.parser.common.sampling import sample_weights
from mem_profiler.parser.log.analysis import NEVER, WindowLog, profile_of
from mem_profiler.parser.model.lifetimes import StackLifetimes


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
        ends == NEVER,
        len(LIFETIME_BINS) - 1,
        np.searchsorted(LIFETIME_ENDS_NS, lived, side="right"),
    )
    bins = np.zeros((len(ids), len(LIFETIME_BINS)))
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
