"""Event log records written by hand, as sampler/memprof_log.h lays them out."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from mem_profiler.parser.read.event_log import (
    ALLOC,
    EVENT_DTYPE,
    FREE,
    MAGIC,
    MARK,
    NODE,
    STACK,
    TIMELINE,
    TREE_STACK,
)

MiB = 1 << 20


def header(index: int = 1, magic: bytes = MAGIC, version: int = 1, start: int = 10**18) -> bytes:
    return struct.pack("<8sIiQQQII", magic, version, 4242, 1, 1, start, index, 100)


def event(kind: int, t: int, size: int, address: int, stack: int = 0) -> bytes:
    return struct.pack("<BBHIqQQI", kind, 0, 36, 7, 10**18 + t, size, address, stack)


def stack_record(stack: int, frames: list[int]) -> bytes:
    return struct.pack(
        f"<BBHIIQ{len(frames)}Q", STACK, 0, 20 + 8 * len(frames), stack, len(frames), 0, *frames
    )


def node_record(node: int, parent: int, frame: int) -> bytes:
    """A node of the calling-context tree (version 2)."""
    return struct.pack("<BBHIIQ", NODE, 0, 20, node, parent, frame)


def tree_stack_record(stack: int, native: int, python: int = 0, label: int = 0, heap: int = 0):
    """A stack by its leaf nodes (version 2)."""
    return struct.pack("<BBHIIIQ", TREE_STACK, heap, 24, stack, native, python, label)


def tree_records(
    chains: dict[int, tuple[list[int], list[int]]],
    nodes: dict[tuple[int, int], int] | None = None,
) -> bytes:
    """NODE and TREE_STACK records of stacks by id: (native frames leaf first, Python
    chain from the innermost frame up), sharing their nodes as the sampler does: each
    node once in a file, before the stack that uses it. `nodes`: the window's numbering,
    (parent, frame) -> node, shared by the calls for its files."""
    nodes = {} if nodes is None else nodes
    written: set[int] = set()
    out = []

    def leaf(chain: list[int]) -> int:
        node = 0
        for frame in reversed(chain):
            parent = node
            node = nodes.setdefault((parent, frame), len(nodes) + 1)
            if node not in written:
                written.add(node)
                out.append(node_record(node, parent, frame))
        return node

    for stack, (native, python) in chains.items():
        native_leaf, python_leaf = leaf(native), leaf(python)
        out.append(tree_stack_record(stack, native_leaf, python_leaf))
    return b"".join(out)


def timeline_record(t: int, peak: int, end: int) -> bytes:
    return struct.pack("<BBHqqqQ", TIMELINE, 0, 36, 10**18 + t, peak, end, 50 * MiB)


def mark_record(t: int, text: bytes, kind: int = 0, ident: int = 0) -> bytes:
    return struct.pack("<BBHIBqQ", MARK, 0, 25 + len(text), 7, kind, 10**18 + t, ident) + text


def large_log(path: Path, events: int = 1_650_000, stacks: int = 100_000) -> None:
    """A log of `events` allocations and frees of 4 KiB (each block freed by the next
    event), with a new stack record of 10 frames every 16 events for the first `stacks`:
    some 60 MB at the defaults, for the reader's tests and `make bench`."""
    table = np.zeros(events, EVENT_DTYPE)
    table["type"] = np.where(np.arange(events) % 2, FREE, ALLOC)
    table["length"] = 36
    table["time_ns"] = 10**18 + np.arange(events) * 1000
    table["size"] = 4096
    table["address"] = 0x10000 + (np.arange(events) // 2) * 4096
    table["stack"] = np.minimum(np.arange(events) // 16, stacks - 1)
    parts = [header()]
    for first in range(0, events, 16):
        if first // 16 < stacks:
            parts.append(stack_record(first // 16, list(range(0x401000, 0x401000 + 8 * 10, 8))))
        parts.append(table[first : first + 16].tobytes())
    path.write_bytes(b"".join(parts))
