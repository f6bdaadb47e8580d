"""Failed device allocations in a heap's report: what was asked for, the error, and from
where — "why did my program run out of device memory"."""

from __future__ import annotations

import dataclasses

import numpy as np

from mem_profiler.parser.escape import visible
from mem_profiler.parser.heapfile import Failure, HeapProfile
from mem_profiler.parser.symbolize import symbolize
from mem_profiler.parser.units import format_amount

FRAMES_SHOWN = 6


def symbolized_failures(profile: HeapProfile, binary: str, allow_mismatch: bool = False,
                        full_names: bool = False) -> list[tuple[Failure, list[str]]]:
    """Each failure with its stack's function names, innermost first."""
    if not profile.failures:
        return []
    stacks = [f.stack for f in profile.failures]
    zeros = np.zeros(len(stacks), np.int64)
    as_samples = dataclasses.replace(
        profile, addrs=np.array([a for s in stacks for a in s], np.uint64),
        offsets=np.concatenate([[0], np.cumsum([len(s) for s in stacks])]).astype(np.int64),
        cur_objs=zeros, cur_bytes=zeros, acc_objs=zeros, acc_bytes=zeros, estimates=None,
        labels={},
        failures=[])
    sym = symbolize(as_samples, binary, allow_mismatch=allow_mismatch)
    return [(f, sym.stack(i, full_names=full_names)) for i, f in enumerate(profile.failures)]


def format_failures(profile: HeapProfile, rows: list[tuple[Failure, list[str]]]) -> str:
    recorded = int(profile.meta.get("failed_allocs", len(rows)))
    out = [f"\nFailed allocations in the {profile.heap} heap: {recorded}"
           + (f" (the first {len(rows)} shown)" if recorded > len(rows) else "") + "\n"]
    for failure, frames in rows:
        shown = " < ".join(map(visible, frames[:FRAMES_SHOWN])) + (
            " < ..." if len(frames) > FRAMES_SHOWN else "")
        out.append(f"{format_amount(failure.bytes, 'bytes'):>12}  error {failure.error}  {shown}\n")
    return "".join(out)
