"""Inefficient device memory (msMemScope's check_inefficient), from the device operations
of a log capture: the kernel launches, copies and sets the device hooks recorded with the
values they were passed (sampler/hooks/device_uses.c). A value inside a device block live at
the time is a use of that block; launches count the time between events.

- early_allocation: a block allocated launches before its first use, while another block
  of its heap was freed in between (it could have had that memory, allocated later);
- late_deallocation: a block freed launches after its last use, while another block of
  its heap was allocated in between;
- temporary_idleness: more than `idle_threshold` launches between two uses of a block.

Blocks are what the device allocator hooks see: with a caching allocator (PyTorch's) a
segment it holds, not the tensors it carves from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mem_profiler.core.errors import UserError
from mem_profiler.core.heaps import HEAPS
from mem_profiler.parser.log.analysis import NEVER, Allocations, WindowLog
from mem_profiler.parser.read.event_log import USE_OPS, USE_PARAMS_UNKNOWN, USE_TRUNCATED

KINDS = ("early_allocation", "late_deallocation", "temporary_idleness")
IDLE_THRESHOLD = 3000  # msMemScope's default, in launches
_LAUNCH = USE_OPS.index("launch")


@dataclass
class Finding:
    """One block found inefficient in one way."""

    kind: str  # one of KINDS
    heap: str
    stack: int  # the allocation's stack id in the log
    address: int
    size: int
    alloc_ns: int  # from the window's start
    free_ns: int | None  # None: live at the end of the log
    launches: int  # before its first use, after its last, or the longest idle stretch
    from_ns: int  # where those launches start: its allocation, last use, or a use
    to_ns: int  # ... and end: its first use, free, or the next use


@dataclass
class Inefficiency:
    """The findings of check_inefficient, and what the analysis saw."""

    findings: list[Finding]
    kinds: tuple[str, ...]
    mem_size: int
    idle_threshold: int
    blocks: int  # device blocks of at least mem_size bytes
    unused: int  # of them, never used by an operation seen
    launches: int
    copies_and_sets: int
    unknown: int  # launches whose parameters could not be read
    truncated: int  # operations with more values than a record holds
    names: dict[int, list[str]] = field(default_factory=dict)  # stack id: frames, leaf first


def check_kinds(kinds: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The kinds asked for (all by default), each checked to be one of KINDS."""
    if not kinds:
        return KINDS
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise UserError(
            f"inefficient type {', '.join(map(repr, unknown))}: each is one of {', '.join(KINDS)}."
        )
    return tuple(k for k in KINDS if k in kinds)


def inefficient(
    cap: WindowLog,
    kinds: tuple[str, ...] = KINDS,
    mem_size: int = 0,
    idle_threshold: int = IDLE_THRESHOLD,
) -> Inefficiency:
    """The device blocks of the log (every heap but the host's) that were allocated early,
    freed late or left idle, largest first within each kind."""
    log, allocs = cap.log, cap.allocs
    uses, values = log.uses, log.use_values
    is_launch = uses["op"] == _LAUNCH
    launch_ns = uses["time_ns"][is_launch]
    value_ns = np.repeat(uses["time_ns"], uses["count"])
    by_address = np.argsort(values, kind="stable")
    sorted_values, sorted_ns = values[by_address], value_ns[by_address]
    device = allocs.heap != HEAPS.index("host")
    chosen = np.flatnonzero(device & (allocs.size >= mem_size))
    findings: list[Finding] = []
    unused = 0
    for heap in np.unique(allocs.heap[chosen]).tolist():
        same_heap = np.flatnonzero(device & (allocs.heap == heap))
        starts = np.sort(allocs.start[same_heap])
        frees = np.sort(allocs.end[same_heap][allocs.end[same_heap] != NEVER])
        for i in chosen[allocs.heap[chosen] == heap].tolist():
            used = _use_times(allocs, i, sorted_values, sorted_ns)
            if len(used) == 0:
                unused += 1
                continue
            findings += _block_findings(
                allocs, i, used, launch_ns, starts, frees, kinds, idle_threshold
            )
    findings.sort(key=lambda f: (KINDS.index(f.kind), -f.size, f.alloc_ns))
    flags = uses["flags"]
    return Inefficiency(
        findings,
        kinds,
        mem_size,
        idle_threshold,
        len(chosen),
        unused,
        int(np.count_nonzero(is_launch)),
        int(np.count_nonzero(~is_launch)),
        int(np.count_nonzero(is_launch & (flags & USE_PARAMS_UNKNOWN > 0))),
        int(np.count_nonzero(flags & USE_TRUNCATED)),
    )


def _use_times(allocs: Allocations, i: int, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The times of the operations that passed a value inside block i while it was live."""
    address = allocs.address[i]
    lo, hi = np.searchsorted(values, [address, address + allocs.size[i]])
    t = times[lo:hi]
    return np.unique(t[(t > allocs.start[i]) & (t < allocs.end[i])])


def _block_findings(
    allocs: Allocations,
    i: int,
    used: np.ndarray,
    launch_ns: np.ndarray,
    starts: np.ndarray,
    frees: np.ndarray,
    kinds: tuple[str, ...],
    idle_threshold: int,
) -> list[Finding]:
    start, end = int(allocs.start[i]), int(allocs.end[i])

    def launches(after: int, before: int) -> int:
        """Launches strictly between two times."""
        return int(np.searchsorted(launch_ns, before) - np.searchsorted(launch_ns, after, "right"))

    def between(times: np.ndarray, after: int, before: int) -> int:
        return int(np.searchsorted(times, before) - np.searchsorted(times, after, "right"))

    def finding(kind: str, count: int, a: int, b: int) -> Finding:
        return Finding(
            kind,
            HEAPS[int(allocs.heap[i])],
            int(allocs.stack[i]),
            int(allocs.address[i]),
            int(allocs.size[i]),
            start,
            None if end == NEVER else end,
            count,
            a,
            b,
        )

    out = []
    first, last = int(used[0]), int(used[-1])
    early = launches(start, first)
    if "early_allocation" in kinds and early and between(frees, start, first):
        out.append(finding("early_allocation", early, start, first))
    late = launches(last, end) if end != NEVER else 0
    if "late_deallocation" in kinds and late and between(starts, last, end):
        out.append(finding("late_deallocation", late, last, end))
    if "temporary_idleness" in kinds and len(used) > 1:
        gaps = np.searchsorted(launch_ns, used[1:]) - np.searchsorted(launch_ns, used[:-1], "right")
        k = int(gaps.argmax())
        if gaps[k] > idle_threshold:
            out.append(finding("temporary_idleness", int(gaps[k]), int(used[k]), int(used[k + 1])))
    return out
