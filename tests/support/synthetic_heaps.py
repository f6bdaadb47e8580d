"""Heap profiles written by hand: a .heap file as mem_profiler writes it, and
symbolized profiles of named stacks."""

from __future__ import annotations

import numpy as np

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.heapfile import parse_heap
from mem_profiler.parser.symbolize import SymbolizedProfile

OURS = """\
heap_v2/1024
# mem_profiler 0.1.0
# pid: 4242
# cmdline: ./leaky 200
# exe: /abs/path/to/leaky
# heap: host
# window_start_ns: 1763750000000000000
# window_end_ns: 1763750001000000000
# unwinder: libunwind
# max_depth: 64
# dropped_samples: 3
# build_id: /abs/path/to/leaky 3f2a00
# build_id: /usr/lib/x86_64-linux-gnu/libc.so.6 AB12
  t*: 120: 491520 [130: 532480]
@ 0x55d0c0a01234 0x55d0c0a01300 0x7f12a0029d90
  t*: 100: 409600 [100: 409600]
@ 0x55d0c0a01250 0x55d0c0a01300
  t*: 20: 81920 [30: 122880]

MAPPED_LIBRARIES:
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 123 /abs/path/to/leaky
55d0c0a01000-55d0c0a02000 r-xp 00001000 fe:01 123 /abs/path/to/leaky
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]
7ffe0000-7ffe1000 rw-p 00000000 00:00 0
"""


def named_stacks(
    prof: HeapProfile, stacks: list[list[str]], values: np.ndarray | None = None
) -> SymbolizedProfile:
    """prof's stacks symbolized by hand: stack i is the names stacks[i] (leaf first), one
    location per function; values as SymbolizedProfile takes them (None: prof's own)."""
    names: dict[str, int] = {}  # one location per function
    frames = np.array([names.setdefault(n, len(names)) for s in stacks for n in s], np.int64)
    offsets = np.r_[0, np.cumsum([len(s) for s in stacks])].astype(np.int64)
    return SymbolizedProfile(
        prof,
        np.arange(len(names), dtype=np.uint64),
        list(names),
        np.arange(len(names)),
        [None] * len(names),
        frames,
        offsets,
        values=values,
    )


def hand_symbolized(stacks: list[list[str]], objs: list[int], nbytes: list[int]):
    """A SymbolizedProfile of named stacks at rate 1 (values exact)."""
    lines = ["heap_v2/1"]
    for stack, o, b in zip(stacks, objs, nbytes, strict=True):
        lines += ["@ " + " ".join("0x1" for _ in stack), f"  t*: {o}: {b} [{o}: {b}]"]
    return named_stacks(parse_heap("\n".join(lines + ["MAPPED_LIBRARIES:"]) + "\n"), stacks)
