"""A live window's snapshots (docs/file-formats.md, "The window's snapshot") written from
plain lists, as the sampler writes them, for the reader's tests: a good one and the
damage a hostile or broken target could write."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import zstandard

from support.tree_files import MAPS

FIRST_LINE = b"memprof_snapshot/1\n"


@dataclass
class Snapshot:
    """What one snapshot says: the ids it starts from, what it adds, the counts of the
    stacks that moved (cur objs, cur bytes, acc objs, acc bytes) and their written
    estimates (by row of `changed`)."""

    token: int = 1
    since: int = 0
    frames_from: int = 0
    frames: list[int] = field(default_factory=list)
    nodes_from: int = 1
    parents: list[int] = field(default_factory=list)
    node_frames: list[int] = field(default_factory=list)
    stacks_from: int = 0
    native: list[int] = field(default_factory=list)
    python: list[int] = field(default_factory=list)
    heap: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    counts: list[tuple[int, int, int, int]] = field(default_factory=list)
    estimates: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    header: list[str] = field(
        default_factory=lambda: [
            "# mem_profiler 0.2.0",
            "# pid: 4242",
            "# exe: /bin/true",
            "# window_start_ns: 100",
            "# window_end_ns: 200",
            "# rates: host=1 device=1",
            "# heap_figures: 0 host live_bytes=0 peak_live_bytes=0 peak_time_ns=0",
        ]
    )
    maps: list[str] | None = field(default_factory=lambda: [MAPS])
    records: tuple[int, int] = (0, 0)


def shuffled(dtype: str, values: list[int]) -> bytes:
    a = np.array(values, dtype)
    return np.ascontiguousarray(a.view(np.uint8).reshape(len(a), a.itemsize).T).tobytes()


def snapshot_payload(s: Snapshot) -> bytes:
    """The stream's text and arrays, uncompressed."""
    rows = sorted(s.estimates)
    line = (
        f"# snapshot: token={s.token} since={s.since}"
        f" frames={s.frames_from}-{s.frames_from + len(s.frames)}"
        f" nodes={s.nodes_from}-{s.nodes_from + len(s.parents)}"
        f" stacks={s.stacks_from}-{s.stacks_from + len(s.native)}"
        f" records={s.records[0]}-{s.records[1]} changed={len(s.changed)}"
        f" estimates={len(rows)} maps={int(s.maps is not None)}"
    )
    arrays = [
        shuffled("<u8", s.frames),
        shuffled("<u4", s.parents),
        shuffled("<u4", s.node_frames),
        shuffled("<u4", s.native),
        shuffled("<u4", s.python or [0] * len(s.native)),
        shuffled("<u4", s.heap or [0] * len(s.native)),
        shuffled("<u8", [0] * len(s.native)),
        shuffled("<u4", s.changed),
        *(shuffled("<u8", [c[k] for c in s.counts]) for k in range(4)),
        shuffled("<u4", rows),
        b"".join(struct.pack("<4d", *s.estimates[r]) for r in rows),
    ]
    text = "\n".join([*s.header, line, ""]).encode()
    maps = "\n".join(["", "MAPPED_LIBRARIES:", *(s.maps or []), ""]).encode()
    return text + b"".join(arrays) + maps


def snapshot_file(s: Snapshot, payload: bytes | None = None) -> bytes:
    """A whole snapshot file of `s` (or of a payload given as it is)."""
    body = snapshot_payload(s) if payload is None else payload
    return FIRST_LINE + zstandard.ZstdCompressor(level=1, write_checksum=True).compress(body)


def two_stacks() -> Snapshot:
    """A first snapshot: main -> work -> malloc's caller twice, two stacks of the host
    heap (frames 1 and 2 under the chain's head, frame 0)."""
    return Snapshot(
        frames=[0x5078000000000000, 0x401000, 0x401100, 0x401200],
        parents=[0, 1, 2, 2],  # node 1 the head; 2: main; 3, 4: its two callees
        node_frames=[0, 1, 2, 3],
        native=[3, 4],
        changed=[0, 1],
        counts=[(1, 100, 2, 200), (0, 0, 3, 30)],
    )
