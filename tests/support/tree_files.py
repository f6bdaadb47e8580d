""".heap files in the tree format (docs/file-formats.md, "The `.heap` file") written
from a list of stacks, and the same stacks as heap_v2 text, so that a test can give the
reader both and compare what it makes of them. The merge of Python frames is written
here as the sampler's C does it (sampler/unwind/python_frames.c, memprof_python_merge): a loop,
the reader's is numpy's."""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import zstandard

from mem_profiler.core.profile import FRAME_BASE

GROUP_END = FRAME_BASE + 0xFFFFFFFF
MAPS = "00400000-00500000 r-xp 00000000 fe:01 1 /bin/true"


@dataclass
class TreeStack:
    """One stack: its native frames and its Python frames in groups (each innermost
    first), its raw counts, the estimate written for it (None: left to the reader, as the
    sampler leaves it for stacks of one size) and its HAL label."""

    native: list[int]  # leaf first
    counts: tuple[int, int, int, int] = (1, 8, 1, 8)  # cur objs, bytes, acc objs, bytes
    python: list[list[int]] = field(default_factory=list)  # groups, innermost first
    estimate: tuple[float, float, float, float] | None = None
    label: int = 0
    stack_id: int | None = None  # the sampler's id; None: its index


@dataclass
class Lifetimes:
    """One stack's sampled frees: by lifetime (under 1 us, 10 us, ... 1 s, longer), the
    temporary ones and their bytes."""

    by_lifetime: tuple[int, ...]  # 8 counts
    temporary: int = 0
    temporary_bytes: int = 0


def python_frame(ident: int) -> int:
    return FRAME_BASE + ident


def in_eval(address: int, evaluation: tuple[int, int] | None) -> bool:
    """A return address inside the evaluation loop: (start, end]."""
    return evaluation is not None and evaluation[0] < address <= evaluation[1]


def merged(stack: TreeStack, evaluation: tuple[int, int] | None) -> list[int]:
    """The stack's frames as the sampler merged them before the tree: group g just
    leafward of the g-th native frame inside the evaluation loop, the rest at the root
    end."""
    out: list[int] = []
    groups = iter(stack.python)
    for address in stack.native:
        if in_eval(address, evaluation):
            out += next(groups, [])
        out.append(address)
    for group in groups:
        out += group
    return out


def python_chain(stack: TreeStack) -> list[int]:
    """Its Python chain from the innermost frame up: each group ended by a group end."""
    return [frame for group in stack.python for frame in [*group, GROUP_END]]


def shuffled(dtype: str, values: list[int]) -> bytes:
    """The values as the tree's arrays hold them: little-endian, byte-shuffled (every
    value's lowest byte, then every value's next byte, ...)."""
    array = np.asarray(values, dtype)
    return array.view(np.uint8).reshape(len(array), array.itemsize).T.tobytes()


def tree_payload(
    rate: int,
    header: list[str],
    stacks: list[TreeStack],
    maps: list[str] | None = None,
    labels: bool = False,
    lifetimes: dict[int, Lifetimes] | None = None,
    blocks: list[tuple[int, int, int]] | None = None,
) -> bytes:
    """The text and arrays a tree's zlib stream holds; `header`: its `#` lines before
    the `# tree:` line, which this adds; `lifetimes`: the sampled frees of some stacks
    (by index), as a table-mode window counts them; `blocks`: a device heap's live
    samples, (stack index, address, size)."""
    frame_index: dict[int, int] = {}
    node_index: dict[tuple[int, int], int] = {}  # (parent, frame) -> node
    parents: list[int] = []
    node_frames: list[int] = []

    def leaf(chain: list[int]) -> int:
        """The node of a chain given leaf first, made from the root down."""
        node = 0
        for address in reversed(chain):
            frame = frame_index.setdefault(address, len(frame_index))
            if (node, frame) not in node_index:
                parents.append(node)
                node_frames.append(frame)
                node_index[node, frame] = len(parents)
            node = node_index[node, frame]
        return node

    native = [leaf(s.native) for s in stacks]
    python = [leaf(python_chain(s)) for s in stacks]
    rows = [i for i, s in enumerate(stacks) if s.estimate is not None]
    frames = list(frame_index)
    ups = [k + 1 - parent for k, parent in enumerate(parents)]
    stack_ids = [i if s.stack_id is None else s.stack_id for i, s in enumerate(stacks)]
    arrays = [
        shuffled("<u8", frames),
        shuffled("<u4", ups),
        shuffled("<u4", node_frames),
        shuffled("<u4", stack_ids),
        shuffled("<u4", native),
        shuffled("<u4", python),
        *(shuffled("<u8", [s.counts[k] for s in stacks]) for k in range(4)),
        shuffled("<u4", rows),
        b"".join(struct.pack("<4d", *s.estimate) for s in stacks if s.estimate is not None),
        shuffled("<u8", [s.label for s in stacks]) if labels else b"",
    ]
    tree_line = (
        f"# tree: frames={len(frames)} nodes={len(parents)} stacks={len(stacks)}"
        f" estimates={len(rows)} labels={int(labels)}"
    )
    if lifetimes is not None:
        freed = lifetimes.values()
        arrays += [
            shuffled("<u4", list(lifetimes)),
            *(shuffled("<u4", [f.by_lifetime[b] for f in freed]) for b in range(8)),
            shuffled("<u4", [f.temporary for f in freed]),
            shuffled("<u8", [f.temporary_bytes for f in freed]),
        ]
        tree_line += f" lifetimes={len(lifetimes)}"
    if blocks is not None:
        arrays += [shuffled(t, [b[k] for b in blocks]) for k, t in enumerate(("<u4", "<u8", "<u8"))]
        tree_line += f" blocks={len(blocks)}"
    text = "\n".join([f"heap_tree/{rate}", *header, tree_line, ""]).encode()
    maps_text = "\n".join(["", "MAPPED_LIBRARIES:", *(maps or [MAPS]), ""]).encode()
    return text + b"".join(arrays) + maps_text


ZSTD_PREFIX = b"memprof_tree/2\n"  # the sampler's files
ZLIB_PREFIX = b"memprof_tree/1\n"  # the earlier versions' files


def compressed(payload: bytes, old: bool = False) -> bytes:
    """A tree's stream as a whole file: zstd level 1 as the sampler writes it, or (old)
    zlib as earlier versions wrote it."""
    if old:
        return ZLIB_PREFIX + zlib.compress(payload, 1)
    return ZSTD_PREFIX + zstandard.ZstdCompressor(level=1, write_checksum=True).compress(payload)


def decompressed(data: bytes) -> bytes:
    """The stream of a whole tree-format file, of either kind."""
    if data.startswith(ZLIB_PREFIX):
        return zlib.decompress(data[len(ZLIB_PREFIX) :])
    assert data.startswith(ZSTD_PREFIX), data[:32]
    return zstandard.ZstdDecompressor().decompressobj().decompress(data[len(ZSTD_PREFIX) :])


def tree_file(
    rate: int,
    header: list[str],
    stacks: list[TreeStack],
    maps: list[str] | None = None,
    labels: bool = False,
    old: bool = False,
) -> bytes:
    """A whole tree-format .heap file (see tree_payload and compressed)."""
    return compressed(tree_payload(rate, header, stacks, maps, labels), old)


def hal_text(flag: int) -> str:
    memtype = flag >> 10 & 0xF
    shown = ("SVM", "DEV", "HOST", "DVPP")[memtype] if memtype < 4 else str(memtype)
    return f"device={flag & 0x3FF} memtype={shown} module={flag >> 56}"


def fallback_estimate(stack: TreeStack, rate: int) -> tuple[float, float, float, float]:
    """What jeprof makes of its counts: each scaled by 1/(1 - exp(-average size/rate))."""
    out: list[float] = []
    for objs, nbytes in (stack.counts[:2], stack.counts[2:]):
        if not objs:
            scale = 0.0
        elif rate <= 1 or not nbytes:
            scale = 1.0
        else:
            scale = 1 / -math.expm1(-nbytes / objs / rate)
        out += [objs * scale, nbytes * scale]
    return out[0], out[1], out[2], out[3]


def heap_v2_text(
    rate: int,
    header: list[str],
    stacks: list[TreeStack],
    evaluation: tuple[int, int] | None = None,
    maps: list[str] | None = None,
    labels: bool = False,
    exact: bool = True,
) -> str:
    """The same stacks as the sampler wrote them before the tree: merged, with an
    estimate each (the reader's fallback where the tree has none), those without counts
    left out. The estimates in full precision, or with two decimals as the sampler wrote
    them (not `exact`)."""
    lines = [f"heap_v2/{rate}", *header]
    for stack in stacks:
        if not any(stack.counts):
            continue
        estimate = stack.estimate or fallback_estimate(stack, rate)
        if labels:
            lines.append(f"# labels: {hal_text(stack.label)}")
        lines += [
            "@ " + " ".join(f"0x{a:x}" for a in merged(stack, evaluation)),
            "  t*: {}: {} [{}: {}]".format(*stack.counts),
            "# estimate: " + " ".join(repr(float(e)) if exact else f"{e:.2f}" for e in estimate),
        ]
    return "\n".join([*lines, "", "MAPPED_LIBRARIES:", *(maps or [MAPS]), ""])
