"""numpy helpers shared by the pipeline."""

from __future__ import annotations

import ctypes

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: multiply, keep the top bits
_INT64_FLOAT_MAX = float(2**63 - 1024)  # the largest float64 below 2^63
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_PROBES = 1 << 22  # values index_of looks up at once


def return_large_frees() -> None:
    """Have the C library map every block of 4 MiB or more on its own, so that numpy's
    large temporaries go back to the system when freed: glibc's threshold otherwise
    rises to the largest block freed, after which blocks of tens of MB come from the
    heap, where what is freed fragments and stays resident. (A lower threshold costs
    the page faults of mapping the many smaller arrays afresh each time.)"""
    try:
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    except (OSError, AttributeError):
        pass  # not glibc


def give_back_freed() -> None:
    """Hand what the C library holds freed back to the system (glibc's malloc_trim): for a
    long-lived process after a peak it will not reach again, such as a pusher naming a
    window's first stacks."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def clip_int64(values: np.ndarray) -> np.ndarray:
    """Whole float64 values as int64, those beyond its range clipped rather than wrapped
    (only a damaged or hand-made file, with absurd rates or sizes, has them)."""
    return np.clip(values, -_INT64_FLOAT_MAX, _INT64_FLOAT_MAX).astype(np.int64)


def runs(
    values: np.ndarray, bounds: np.ndarray, which: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The runs `which` of `values` laid end to end (run i is values[bounds[i]:bounds[i +
    1]]), in that order, one after another, and their bounds."""
    starts = bounds[which]
    lengths = bounds[which + 1] - starts
    out = np.zeros(len(which) + 1, np.int64)
    np.cumsum(lengths, out=out[1:])
    # the positions taken, as a running sum of steps of 1 that jump at each run's first:
    # one array of a number per value (of 32 bits where they fit), where start + offset
    # would make three of 64
    step = np.ones(int(out[-1]), np.int32 if len(values) < 2**31 else np.int64)
    taken = lengths > 0
    starts, ends = starts[taken], starts[taken] + lengths[taken]
    step[out[:-1][taken]] = starts - np.r_[0, ends[:-1] - 1] if len(starts) else 0
    return values[np.cumsum(step, out=step)], out


def stack_positions(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of stacks laid end to end (stack i's frames from offsets[i] to
    offsets[i + 1]), its stack and its position in it from the leaf (int32 both)."""
    lengths = np.diff(offsets)
    stack_of = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    position = np.arange(int(offsets[-1]), dtype=np.int32)
    position -= offsets[:-1][stack_of].astype(np.int32)
    return stack_of, position


def stack_sums(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per stack of frames laid end to end (stack i's from offsets[i] to offsets[i + 1]),
    how many of its frames `mask` marks: without an array of a number per frame."""
    lengths = np.diff(offsets)
    out = np.zeros(len(lengths), np.int64)
    full = lengths > 0
    if full.any():  # consecutive non-empty stacks' starts delimit each
        out[full] = np.add.reduceat(mask, offsets[:-1][full], dtype=np.int64)
    return out


def without_frames(
    frames: np.ndarray, offsets: np.ndarray, drop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The stacks (`frames`, `offsets`) without the frames `drop` marks."""
    new_offsets = offsets.copy()
    new_offsets[1:] -= np.cumsum(stack_sums(drop, offsets)).astype(offsets.dtype)
    return frames[~drop], new_offsets


def sorted_unique(values: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """np.unique by sorting (numpy 2's hash-based unique is ~20x slower on 10^6 int64).

    overwrite: sort `values` in place rather than a copy (a large temporary of the caller:
    every fresh array of 10^7 bytes costs its page faults)."""
    if overwrite:
        values.sort()
    else:
        values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def name_ranks(names: list[str]) -> np.ndarray:
    """Rank of each name in alphabetical order (the last sort key of every report)."""
    ranks = np.empty(len(names), np.int64)
    ranks[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    return ranks


def range_holding(starts: np.ndarray, ends: np.ndarray, vaddrs: np.ndarray) -> np.ndarray:
    """For each vaddr, the index of the range [starts[i], ends[i]) that holds it (ranges
    sorted by start, none overlapping the next's start), -1 where none does."""
    idx = np.searchsorted(starts, vaddrs, side="right").astype(np.int64) - 1
    hit = idx >= 0
    hit[hit] = vaddrs[hit] < ends[idx[hit]]
    return np.where(hit, idx, -1)


def index_of(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Position in `keys` (distinct uint64) of each of `values`, all of which are keys.

    An open-addressing hash table probed for all values at once: searchsorted costs a
    mispredicted branch per level, ~4x slower on 10^6 values among 10^4 keys."""
    keys = np.asarray(keys, np.uint64)
    values = np.asarray(values, np.uint64)
    bits = max(int(8 * len(keys)).bit_length(), 1)
    mask, shift = (1 << bits) - 1, np.uint64(64 - bits)
    table = np.full(1 << bits, -1, np.int32 if len(keys) < 2**31 else np.int64)
    pending, slots = np.arange(len(keys)), _hash(keys, shift)
    while len(pending):  # insert; of the keys that land on one free slot, one wins it
        free = table[slots[pending]] < 0
        table[slots[pending[free]]] = pending[free]
        pending = pending[table[slots[pending]] != pending]
        slots[pending] = (slots[pending] + 1) & mask
    out = np.empty(len(values), table.dtype)
    for a in range(0, len(values), _PROBES):  # a run at a time: small temporaries
        part = values[a : a + _PROBES]
        found = table[_hash(part, shift)]  # most values are found at their first probe
        todo = np.flatnonzero(keys[found] != part)
        probe = _hash(part[todo], shift)
        while len(todo):
            probe = (probe + 1) & mask
            slot = table[probe]
            if (slot < 0).any():  # an empty slot ends a probe sequence
                raise ValueError("index_of: a value is not among the keys")
            hit = keys[slot] == part[todo]
            found[todo[hit]] = slot[hit]
            todo, probe = todo[~hit], probe[~hit]
        out[a : a + len(part)] = found
    return out


def _hash(values: np.ndarray, shift: np.uint64) -> np.ndarray:
    """Fibonacci hashing: the top bits of values * 2^64/phi, as int64 slot numbers."""
    slots = values * _GOLDEN
    slots >>= shift
    return slots.view(np.int64)
