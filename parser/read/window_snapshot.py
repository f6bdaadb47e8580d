"""Strict reader of a live window's snapshot (docs/file-formats.md, "The window's
snapshot"): what a process wrote for a reader that follows its window, all of it or what
changed since the reader's last snapshot. The target is a stranger: every count and id
is checked, and the decompressed text bounded, before anything is kept."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.input_files import MAX_PROFILE_BYTES, read_errors, read_regular
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.read.header_lines import header_line, python_frame_lines
from mem_profiler.parser.read.text import MAPPED_LIBRARIES, decode, read_mappings, show
from mem_profiler.parser.read.tree_file import decompressed, unshuffle

FIRST_LINE = b"memprof_snapshot/1\n"
SUFFIX = ".snapshot"
_MARKER = b"\n# snapshot: "
_SPAN = r"([0-9]{1,10})-([0-9]{1,10})"
_SNAPSHOT_RE = re.compile(
    rf"token=([0-9]{{1,20}}) since=([0-9]{{1,20}}) frames={_SPAN} nodes={_SPAN}"
    rf" stacks={_SPAN} records={_SPAN} changed=([0-9]{{1,10}}) estimates=([0-9]{{1,10}})"
    r" maps=([01])"
)
_HEAP_FIGURES_RE = re.compile(
    r"([0-9]{1,2}) ([a-z_]{1,32}) live_bytes=([0-9]{1,20})"
    r" peak_live_bytes=([0-9]{1,20}) peak_time_ns=([0-9]{1,20})"
)
_RATES_RE = re.compile(r"host=([0-9]{1,20}) device=([0-9]{1,20})")
_COUNTS = ("cur_objs", "cur_bytes", "acc_objs", "acc_bytes")
_FRAME_LINE = b"# python_frame:"


@dataclass
class HeapFigures:
    """One heap of the window: its live bytes and peak (unsampled)."""

    name: str
    live_bytes: int
    peak_live_bytes: int
    peak_time_ns: int


@dataclass
class WindowSnapshot:
    """A snapshot, as written: the frames, nodes and stacks made since the one it follows
    (ids from each `*_from` on), the counts of the stacks that moved, and `head`, a
    profile of no stacks saying who ran and, where they changed, the code mappings and
    build-ids; its Python frame records are those made since."""

    head: HeapProfile
    token: int
    since: int  # the token of the snapshot this one follows; 0: it holds everything
    rates: tuple[int, int]  # the host heap's, every device heap's
    heaps: dict[int, HeapFigures]  # by index into HEAPS: the host's, and those in use
    frames_from: int
    frames: np.ndarray  # uint64 addresses
    nodes_from: int
    parents: np.ndarray  # uint32, each below its node's id
    node_frames: np.ndarray  # uint32 frame ids
    stacks_from: int
    native: np.ndarray  # uint32 leaf node ids (0: none)
    python: np.ndarray
    heap: np.ndarray  # uint32 index into HEAPS, or with NOTED_HEAP: a noted event's
    label: np.ndarray  # uint64 (the HAL's allocation flags)
    changed: np.ndarray  # uint32 stack ids whose counts moved
    counts: np.ndarray  # uint64 (changed, 4): _COUNTS, each below 2^63
    estimate_rows: np.ndarray  # uint32 rows of `changed` whose estimates are written
    estimates: np.ndarray  # float64 (estimate_rows, 4): cur objs, cur bytes, acc objs, acc bytes
    maps_changed: bool
    warnings: list[str] = field(default_factory=list)


NOTED_HEAP = 0x100  # a stack of a noted event (sampler/tables/stack_table.h)

# A window's call tree has at most a node per frame of each stack; this many per stack
# on average is far past what programs make (2 to 6, the deepest distinct stacks), and a
# snapshot's file and its text are given this many bytes per stack, or the floor.
NODES_PER_STACK = 32
BYTES_PER_STACK, BYTES_FLOOR = 1024, 64 << 20


@dataclass(frozen=True)
class WindowCap:
    """The most a reader keeps of one window (the agent's, of each process it follows):
    `stacks`, NODES_PER_STACK times as many call-tree nodes, and snapshots of
    BYTES_PER_STACK bytes a stack (BYTES_FLOOR at least); `raised_by` says how to raise
    it."""

    stacks: int
    raised_by: str

    @property
    def nodes(self) -> int:
        return NODES_PER_STACK * self.stacks

    @property
    def snapshot_bytes(self) -> int:
        return max(BYTES_FLOOR, BYTES_PER_STACK * self.stacks)

    def too_large(self, size: int) -> HeapFileError:
        return OverCap(
            f"was written in a snapshot of {size:,} bytes, more than the"
            f" {self.snapshot_bytes:,} read of one window ({self.raised_by} raises it)"
        )


class OverCap(HeapFileError):
    """A snapshot of a window larger than its reader's WindowCap."""


def read_snapshot(path: str | os.PathLike[str], cap: WindowCap | None = None) -> WindowSnapshot:
    """Read and check a snapshot file; HeapFileError, one sentence, on any problem
    (OverCap: one larger than `cap`, found before it is decompressed)."""
    name = os.fspath(path)
    too_large = cap.too_large if cap is not None else None
    with read_errors(name, HeapFileError):
        data = read_regular(name, "a window's snapshot", HeapFileError, _most(cap), too_large)
    return parse_snapshot(data, name, cap)


def _most(cap: WindowCap | None) -> int:
    """The bytes a snapshot (its file, and its stream decompressed) may take."""
    return MAX_PROFILE_BYTES if cap is None else cap.snapshot_bytes


def parse_snapshot(
    data: bytes, name: str = "<snapshot>", cap: WindowCap | None = None
) -> WindowSnapshot:
    if not data.startswith(FIRST_LINE):
        raise HeapFileError(
            f"{name}:1: expected {FIRST_LINE.decode().strip()!r}, found"
            f" {show(decode(data[:32]))}: not a snapshot of this mem_profiler's sampler"
        )

    def declared_size(line: bytes) -> int:
        """The bytes of arrays a `# snapshot:` line counts (0 for one that does not
        parse), once its window is within `cap`."""
        m = _SNAPSHOT_RE.fullmatch(decode(line[len("# snapshot:") :]).strip())
        if m is None:
            return 0
        spans = _spans(m)
        _check_cap(spans, cap)
        return _arrays_size(spans)

    stream = data[len(FIRST_LINE) :]
    text = decompressed(FIRST_LINE, stream, name, _MARKER, declared_size, _most(cap))
    head = HeapProfile(path=name, rate=0)
    heaps: dict[int, HeapFigures] = {}
    counts, at = _header(head, heaps, text, name)
    _check_cap(counts, cap)
    rates = _RATES_RE.fullmatch(head.meta.pop("rates", ""))
    if rates is None or not all(0 < int(r) < 2**64 for r in rates.groups()):
        raise HeapFileError(f"{name}: no '# rates: host=R device=R' line (each from 1)")
    head.rate = int(rates[1])
    return _arrays(head, (head.rate, int(rates[2])), heaps, counts, text, at, name)


def _check_cap(c: dict[str, int], cap: WindowCap | None) -> None:
    if cap is not None and (c["stacks_to"] > cap.stacks or c["nodes_to"] > cap.nodes):
        raise OverCap(
            f"holds {c['stacks_to']:,} stacks in a call tree of {c['nodes_to']:,} nodes,"
            f" more than the {cap.stacks:,} stacks and {cap.nodes:,} nodes kept of one"
            f" window ({cap.raised_by} raises it)"
        )


def _spans(m: re.Match[str]) -> dict[str, int]:
    numbers = [int(g) for g in m.groups()]
    names: tuple[str, ...] = ("token", "since", "frames_from", "frames_to", "nodes_from")
    names += ("nodes_to",)
    names += ("stacks_from", "stacks_to", "records_from", "records_to", "changed", "estimates")
    return {**dict(zip(names, numbers[:-1], strict=True)), "maps": numbers[-1]}


def _lengths(c: dict[str, int]) -> tuple[int, int, int]:
    return (
        c["frames_to"] - c["frames_from"],
        c["nodes_to"] - c["nodes_from"],
        (c["stacks_to"] - c["stacks_from"]),
    )


def _arrays_size(c: dict[str, int]) -> int:
    frames, nodes, stacks = (max(n, 0) for n in _lengths(c))
    return 8 * frames + 8 * nodes + 20 * stacks + 36 * c["changed"] + 36 * c["estimates"]


def _header(
    head: HeapProfile, heaps: dict[int, HeapFigures], text: bytes, name: str
) -> tuple[dict[str, int], int]:
    """The `#` lines into `head` and `heaps`, up to the `# snapshot:` line: its counts,
    and where the arrays after it start."""
    start, lineno = 0, 1
    while True:
        if text.startswith(_FRAME_LINE, start):
            start, read = python_frame_lines(head, text, start)
            lineno += read
        end = text.find(b"\n", start)
        if end < 0:
            raise HeapFileError(f"{name}:{lineno + 1}: no '# snapshot:' line: the file is cut")
        line = decode(text[start:end])
        lineno, start = lineno + 1, end + 1
        try:
            if line.startswith("# snapshot:"):
                return _snapshot_line(line), start
            if line.startswith("# heap_figures:"):
                _heap_figures(heaps, line)
            elif line[:1] == "#":
                header_line(head, line)
            elif line.strip():
                raise ValueError(f"unexpected line {show(line)}")
        except ValueError as e:
            raise HeapFileError(f"{name}:{lineno}: {e}") from None


def _snapshot_line(line: str) -> dict[str, int]:
    m = _SNAPSHOT_RE.fullmatch(line[len("# snapshot:") :].strip())
    if m is None:
        raise ValueError(
            "expected '# snapshot: token=T since=S frames=A-B nodes=A-B stacks=A-B"
            f" records=A-B changed=C estimates=E maps=0|1', found {show(line)}"
        )
    c = _spans(m)
    if min(_lengths(c)) < 0 or c["records_to"] < c["records_from"]:
        raise ValueError(f"a span that ends before it starts: {show(line)}")
    if c["nodes_from"] < 1:
        raise ValueError("nodes that start at 0, the root, which no snapshot holds")
    if c["estimates"] > c["changed"]:
        raise ValueError(f"more estimates than stacks that changed: {show(line)}")
    if c["since"] == 0 and (c["frames_from"], c["nodes_from"], c["stacks_from"]) != (0, 1, 0):
        raise ValueError(f"a snapshot of everything that does not start at the start: {show(line)}")
    return c


def _heap_figures(heaps: dict[int, HeapFigures], line: str) -> None:
    m = _HEAP_FIGURES_RE.fullmatch(line[len("# heap_figures:") :].strip())
    if m is None or int(m[1]) >= len(HEAPS) or HEAPS[int(m[1])] != m[2]:
        raise ValueError(
            "expected '# heap_figures: <index> <heap> rate=R live_bytes=L peak_live_bytes=P"
            f" peak_time_ns=T' of one of {', '.join(HEAPS)}, found {show(line)}"
        )
    numbers = [int(g) for g in m.groups()[2:]]
    if max(numbers) >= 2**64:
        raise ValueError(f"a figure out of range (all below 2^64): {show(line)}")
    heaps[int(m[1])] = HeapFigures(m[2], *numbers)


def _arrays(
    head: HeapProfile,
    rates: tuple[int, int],
    heaps: dict[int, HeapFigures],
    c: dict[str, int],
    text: bytes,
    at: int,
    name: str,
) -> WindowSnapshot:
    size = _arrays_size(c)
    if len(text) < at + size:
        raise HeapFileError(
            f"{name}: the snapshot's arrays are cut short: its '# snapshot:' line says"
            f" {size:,} bytes, {len(text) - at:,} follow it (the file is damaged)"
        )
    frames, nodes, stacks = _lengths(c)
    shapes = [
        ("frames", "<u8", frames), ("parents", "<u4", nodes), ("node_frames", "<u4", nodes),
        ("native", "<u4", stacks), ("python", "<u4", stacks), ("heap", "<u4", stacks),
        ("label", "<u8", stacks), ("changed", "<u4", c["changed"]),
        *((counter, "<u8", c["changed"]) for counter in _COUNTS),
        ("estimate_rows", "<u4", c["estimates"]),
    ]  # fmt: skip
    arrays = {}
    for key, dtype, length in shapes:
        arrays[key] = unshuffle(text, dtype, length, at)
        at += arrays[key].nbytes
    estimates = np.frombuffer(text, "<f8", 4 * c["estimates"], at).reshape(-1, 4)
    at += estimates.nbytes
    tail = text[at:]
    if not tail.startswith(b"\n" + MAPPED_LIBRARIES.encode()):
        raise HeapFileError(
            f"{name}: expected '{MAPPED_LIBRARIES}' right after the snapshot's arrays"
            " (the file is damaged)"
        )
    if c["maps"]:
        lines = decode(tail[len(MAPPED_LIBRARIES) + 2 :]).split("\n")
        read_mappings(
            head, enumerate(lines), lambda n, what: HeapFileError(f"{name}: mapping {n}: {what}")
        )
    counts = np.column_stack([arrays[k] for k in _COUNTS]).reshape(-1, 4)
    _check(arrays, counts, estimates, c, name)
    return WindowSnapshot(
        head=head,
        token=c["token"],
        since=c["since"],
        rates=rates,
        heaps=heaps,
        frames_from=c["frames_from"],
        frames=arrays["frames"],
        nodes_from=c["nodes_from"],
        parents=arrays["parents"],
        node_frames=arrays["node_frames"],
        stacks_from=c["stacks_from"],
        native=arrays["native"],
        python=arrays["python"],
        heap=arrays["heap"],
        label=arrays["label"],
        changed=arrays["changed"],
        counts=counts,
        estimate_rows=arrays["estimate_rows"],
        estimates=estimates.copy(),
        maps_changed=bool(c["maps"]),
    )


def _check(
    a: dict[str, np.ndarray],
    counts: np.ndarray,
    estimates: np.ndarray,
    c: dict[str, int],
    name: str,
) -> None:
    """What the arrays name is within what the snapshot (with those before it) holds."""

    def fail(what: str) -> HeapFileError:
        return HeapFileError(f"{name}: {what} (the file is damaged)")

    ids = np.arange(c["nodes_from"], c["nodes_to"])
    if (a["parents"] >= ids).any():
        raise fail("a node whose parent does not come before it")
    if (a["node_frames"] >= c["frames_to"]).any():
        raise fail(f"a node that names a frame beyond the {c['frames_to']:,} there are")
    if (a["native"] >= c["nodes_to"]).any() or (a["python"] >= c["nodes_to"]).any():
        raise fail(f"a stack whose leaf is beyond the {c['nodes_to']:,} nodes there are")
    heap = a["heap"] & ~np.uint32(NOTED_HEAP)
    if (heap >= len(HEAPS)).any() or (a["heap"] > (NOTED_HEAP | (len(HEAPS) - 1))).any():
        raise fail("a stack of no heap this reader knows")
    if (a["changed"] >= c["stacks_to"]).any():
        raise fail(f"counts of a stack beyond the {c['stacks_to']:,} there are")
    if len(np.unique(a["changed"])) != len(a["changed"]):
        raise fail("counts of one stack twice")
    if (counts >= np.uint64(2**63)).any():
        raise fail("a count too large for 64 bits")
    rows = a["estimate_rows"]
    if (rows >= c["changed"]).any() or len(np.unique(rows)) != len(rows):
        raise fail("an estimate of no stack that changed, or two of one")
    if not (np.isfinite(estimates) & (estimates >= 0)).all():
        raise fail("an estimate that is not a finite number of at least 0")
