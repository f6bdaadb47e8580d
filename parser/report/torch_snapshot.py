"""A capture's CUDA heaps as PyTorch's memory snapshot: the dict that
`torch.cuda.memory._snapshot()` returns, pickled, which `python -m torch.cuda._memory_viz`
(stats, trace, segments, memory) and pytorch.org/memory_viz read. Segments are the
`cuda_segments` heap's blocks live at the window's end, blocks the `cuda` heap's (the
tensors) inside them, the gaps between them inactive blocks; from a log-mode capture,
`device_traces` the two heaps' allocations and frees in time order (a table-mode window
keeps its live blocks, not their history). What differs from torch's own is said in the
file (`mem_profiler`) and in docs/devices.md."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mem_profiler.core.errors import UserError
from mem_profiler.parser.log.analysis import NEVER, Allocations, WindowLog, estimates
from mem_profiler.parser.read.event_log import heap_id

# PyTorch's caching allocator hands out blocks in multiples of this (round_size)
BLOCK_ROUND = 512
# Segments up to this size are its small pool's (kSmallBuffer)
SMALL_SEGMENT = 2 << 20
Frame = dict[str, object]  # {"filename", "line", "name"}
# The frames of each of a log's stacks, innermost first, by stack id
FramesOf = Callable[[list[int]], dict[int, list[Frame]]]
NOTE = (
    "Written by mem_parser --torch-snapshot: one device (0), one"
    " stream (0), the caching allocator's block sizes rounded to 512 bytes from the"
    " sizes asked for, and the gaps between a segment's blocks as inactive blocks; the"
    " segments are every cudaMalloc the process made in the window (other libraries'"
    " too), the blocks and trace entries the tensors the allocator handed out; a"
    " capture without an event log has no trace."
)
NO_SEGMENT = (
    "the window recorded no CUDA segment (the cuda_segments heap): capture the program's"
    " whole run (`mem_profiler run`), or a window open before its allocator reserves its"
    " memory."
)


@dataclass
class Blocks:
    """One heap's live blocks: addresses, sizes asked for, and each one's frames."""

    address: np.ndarray  # int64
    size: np.ndarray  # int64
    frames: list[list[Frame]]


def torch_snapshot(cap: WindowLog, frames_of: FramesOf) -> bytes:
    """The snapshot of `cap`'s cuda and cuda_segments heaps, pickled (protocol 4, which
    the web viewer reads); UserError where the window recorded no segment."""
    a = cap.allocs
    tensors = np.flatnonzero(a.heap == heap_id("cuda"))
    segments = np.flatnonzero(a.heap == heap_id("cuda_segments"))
    if not len(segments):
        raise UserError(NO_SEGMENT)
    names = frames_of(sorted({int(s) for s in a.stack[np.r_[tensors, segments]].tolist()}))

    def live(which: np.ndarray) -> Blocks:
        which = which[a.end[which] == NEVER]
        frames = [names.get(stack, []) for stack in a.stack[which].tolist()]
        return Blocks(a.address[which].astype(np.int64), a.size[which].astype(np.int64), frames)

    trace = _trace(a, tensors, segments, names)
    return _pickled(live(segments), live(tensors), cap.log.device_rate, [trace])


def table_snapshot(segments: Blocks | None, tensors: Blocks | None, rate: int) -> bytes:
    """The snapshot of a window without an event log: the live blocks of its
    cuda_segments heap and of its cuda heap (None: the window has no file of it)."""
    if segments is None or not len(segments.address):
        raise UserError(NO_SEGMENT)
    none = Blocks(np.zeros(0, np.int64), np.zeros(0, np.int64), [])
    return _pickled(segments, tensors or none, rate, [[]])


def _pickled(segments: Blocks, tensors: Blocks, rate: int, traces: list[list[dict]]) -> bytes:
    placed, laid = _segments(segments, tensors, rate)
    snapshot = {
        "segments": laid,
        "device_traces": traces,
        "allocator_settings": {},
        "mem_profiler": {
            "note": NOTE,
            "device_rate": rate,
            "sampled": rate > 1,
            "tensors_outside_segments": int(len(tensors.address) - placed),
        },
    }
    return pickle.dumps(snapshot, protocol=4)


def block_size(requested: np.ndarray) -> np.ndarray:
    """The caching allocator's size of blocks asked for `requested` bytes."""
    requested = np.asarray(requested, np.int64)
    return np.maximum(-(-requested // BLOCK_ROUND) * BLOCK_ROUND, BLOCK_ROUND)


def _segments(segments: Blocks, tensors: Blocks, rate: int) -> tuple[int, list[dict[str, object]]]:
    """The live `segments`, by address, each with the live `tensors` inside it as its
    active blocks and the rest of it as inactive ones; and how many tensors were placed."""
    by_address = np.argsort(tensors.address, kind="stable")
    starts = tensors.address[by_address]
    # per tensor: address, bytes asked for, its block's size, what the sample stands for
    tensor_rows = list(
        zip(
            starts.tolist(),
            tensors.size[by_address].tolist(),
            block_size(tensors.size[by_address]).tolist(),
            estimates(tensors.size[by_address], rate).tolist(),
            [tensors.frames[i] for i in by_address.tolist()],
            strict=True,
        )
    )
    placed = 0
    laid: list[dict[str, object]] = []
    for s in np.argsort(segments.address, kind="stable").tolist():
        base, total = int(segments.address[s]), int(segments.size[s])
        inside = np.flatnonzero((starts >= base) & (starts < base + total))
        blocks: list[dict[str, object]] = []
        cursor, allocated, requested = base, 0, 0
        for k in inside.tolist():
            at, asked, rounded, weight, frames = tensor_rows[k]
            if at < cursor:  # a tensor over another's block: the log lost a free
                continue
            if at > cursor:
                blocks.append(_inactive(cursor, at - cursor))
            size = min(rounded, base + total - at)
            blocks.append(
                {
                    "address": at,
                    "size": size,
                    "requested_size": asked,
                    "state": "active_allocated",
                    "frames": frames,
                    # what the sampled block stands for, at a --device-rate that samples
                    "estimated_bytes": weight,
                }
            )
            cursor, allocated, requested = at + size, allocated + size, requested + asked
            placed += 1
        if cursor < base + total:
            blocks.append(_inactive(cursor, base + total - cursor))
        laid.append(
            {
                "device": 0,
                "address": base,
                "total_size": total,
                "allocated_size": allocated,
                "active_size": allocated,
                "requested_size": requested,
                "stream": 0,
                "segment_type": "small" if total <= SMALL_SEGMENT else "large",
                "segment_pool_id": (0, 0),
                "is_expandable": False,
                "frames": segments.frames[s],
                "blocks": blocks,
            }
        )
    return placed, laid


def _inactive(address: int, size: int) -> dict[str, object]:
    """A free stretch of a segment, as a block of its own."""
    return {
        "address": address,
        "size": size,
        "requested_size": 0,
        "state": "inactive",
        "frames": [],
    }


def _trace(
    a: Allocations, tensors: np.ndarray, segments: np.ndarray, names: dict[int, list[Frame]]
) -> list[dict[str, object]]:
    """The allocations and frees of both heaps as trace entries, in time order (a free's
    request and completion at once: the log has the free)."""
    # (time, 0 for a free and 1 for an allocation: a free first at one time, action,
    # address, size, stack)
    rows: list[tuple[int, int, str, int, int, int]] = []
    kinds = (
        (segments, a.size[segments], "segment_alloc", ("segment_free",)),
        (tensors, block_size(a.size[tensors]), "alloc", ("free_requested", "free_completed")),
    )
    for which, sizes, made, freed in kinds:
        for i, size in zip(which.tolist(), sizes.tolist(), strict=True):
            address, stack = int(a.address[i]), int(a.stack[i])
            rows.append((int(a.start[i]), 1, made, address, int(size), stack))
            if a.end[i] != NEVER:
                rows += [(int(a.end[i]), 0, action, address, int(size), stack) for action in freed]
    rows.sort(key=lambda r: (r[0], r[1]))  # stable: a free's request before its completion
    return [
        {
            "action": action,
            "addr": address,
            "size": size,
            "stream": 0,
            "time_us": time // 1000,
            "frames": names.get(stack, []),
        }
        for time, _, action, address, size, stack in rows
    ]
