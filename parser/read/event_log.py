"""Reader of the event log of --mode log (format: sampler/memprof_log.h, docs/file-formats.md).

A capture's log is `<base>.<k>.memlog`, k = 1, 2, ... as the files rotate; `base` is
`<prefix><pid>.<seq>`, written in the capture's .heap as `# log: <base>`. Rotation deletes
the oldest files, so the reader takes the newest run of consecutive files."""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from mem_profiler.core.errors import UserError
from mem_profiler.core.file_names import heap_file, heap_stem, log_files, log_stem
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.input_files import read_regular
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.read.context_tree import StackTree, Tree
from mem_profiler.parser.read.heap_file import read_heap

MAGIC = b"MPLOG\0\r\n"
VERSIONS = (1, 2)  # 1: stacks as lists of frames (STACK); 2: as a tree (NODE, TREE_STACK)
ALLOC, FREE, STACK, TIMELINE, MARK, NODE, TREE_STACK, USE = 1, 2, 3, 4, 5, 6, 7, 8
MARK_KINDS = ("point", "range_start", "range_end", "step")
USE_OPS = ("launch", "copy", "set")  # memprof_use_op
USE_PARAMS_UNKNOWN, USE_TRUNCATED = 1, 2  # memprof_use_flags
STEP_TEXT = "step"  # the text given to memprof_step()'s marks, which carry none

_HEADER = struct.Struct("<8sIiQQQII")  # memprof_log_header
_STACK = struct.Struct("<BBHIIQ")  # memprof_log_stack, then depth frames
_MARK = struct.Struct("<BBHIBQQ")  # memprof_log_mark, then the text
_USE = struct.Struct("<BBHIBBHQ")  # memprof_log_use, then its values
_RECORD_HEAD = 4  # memprof_log_record: type, heap, size (of the whole record)
EVENT_DTYPE = np.dtype(
    [
        ("type", "u1"),
        ("heap", "u1"),
        ("length", "<u2"),
        ("tid", "<u4"),
        ("time_ns", "<i8"),
        ("size", "<u8"),
        ("address", "<u8"),
        ("stack", "<u4"),
    ]
)
TIMELINE_DTYPE = np.dtype(
    [
        ("type", "u1"),
        ("heap", "u1"),
        ("length", "<u2"),
        ("time_ns", "<i8"),
        ("peak", "<i8"),
        ("end", "<i8"),
        ("rss", "<u8"),
    ]
)
NODE_DTYPE = np.dtype(
    [
        ("type", "u1"),
        ("heap", "u1"),
        ("length", "<u2"),
        ("node", "<u4"),
        ("parent", "<u4"),
        ("frame", "<u8"),
    ]
)
USE_DTYPE = np.dtype(
    [
        ("time_ns", "<i8"),
        ("heap", "u1"),
        ("op", "u1"),  # an index of USE_OPS
        ("flags", "u1"),
        ("tid", "<u4"),
        ("first", "<i8"),  # its values: use_values[first : first + count]
        ("count", "<i4"),
    ]
)
TREE_STACK_DTYPE = np.dtype(
    [
        ("type", "u1"),
        ("heap", "u1"),
        ("length", "<u2"),
        ("stack", "<u4"),
        ("native", "<u4"),  # the leaf nodes
        ("python", "<u4"),
        ("label", "<u8"),
    ]
)
# The records of fixed size, almost all of a log: a run of them is found by one regular
# expression and its records' types by another; each type is then taken out of the whole
# file at once (a torch training loop's log holds 10^5 such runs between other records).
# A run of one kind past _LONG_RUN records (a C program's events, once its stacks are
# known) goes on in numpy, its records' heads checked many at a time.
_LONG_RUN = 256
_FIXED = {ALLOC: EVENT_DTYPE, FREE: EVENT_DTYPE, NODE: NODE_DTYPE, TREE_STACK: TREE_STACK_DTYPE}
_FIXED_RECORD = b"|".join(
    re.escape(bytes([rtype])) + b"." + re.escape(struct.pack("<H", dtype.itemsize))
    + b".{%d}" % (dtype.itemsize - _RECORD_HEAD)
    for rtype, dtype in _FIXED.items()
)  # fmt: skip
_FIXED_RUN = re.compile(b"(?:" + _FIXED_RECORD + b"){0,%d}" % _LONG_RUN, re.DOTALL)
_FIXED_TYPE = re.compile(b"(?=(.))(?:" + _FIXED_RECORD + b")", re.DOTALL)  # each one's type
_FIXED_SIZE = np.zeros(256, np.int64)
_FIXED_SIZE[list(_FIXED)] = [dtype.itemsize for dtype in _FIXED.values()]
# CLOCK_REALTIME in ns, and sizes, fit in 63 bits (until the year 2262, and beyond any
# address space): larger values, read from unsigned fields, are damage.
_TIME_LIMIT = _SIZE_LIMIT = 2**63


class EventLogError(UserError):
    """An event log that is missing, unreadable or not one."""


class Stack(NamedTuple):
    heap: int
    label: int  # the HAL's allocation flags; 0 for other heaps
    frames: np.ndarray  # uint64 return addresses, leaf first


class LogStacks(Mapping[int, Stack]):
    """The log's stacks by id.  Those of the tree (version 2) are expanded when asked for:
    a PyTorch program's log names 10^5 stacks of about 100 frames, which a timeline never
    reads and other reports read together (frames_of)."""

    def __init__(self, listed: dict[int, Stack]) -> None:
        self.listed = listed  # STACK records (version 1): their frames as written
        self._ids = np.zeros(0, np.int64)  # TREE_STACK records', sorted
        self._heaps = self._labels = self._native = self._python = self._ids
        self._tree: Tree | None = None
        self._evaluation: tuple[int, int | None] | None = None

    def hold_tree(
        self,
        tree: Tree,
        stacks: np.ndarray,
        columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        evaluation: tuple[int, int | None] | None,
    ) -> None:
        """The tree stacks `stacks` (ids) with their `columns`: heap, label, and native
        and Python leaves as places in `tree`; `evaluation` places their Python frames
        (Tree.stacks)."""
        order = np.argsort(stacks, kind="stable")
        self._ids = stacks[order]
        self._heaps, self._labels, self._native, self._python = (c[order] for c in columns)
        self._tree, self._evaluation = tree, evaluation
        for stack in self._ids.tolist():
            self.listed.pop(stack, None)

    def _rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each id's row among the tree stacks, and whether it is one."""
        return _found(self._ids, ids)

    def frames_of(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The frames of the stacks `ids`, leaf first, concatenated, and their offsets
        (none for an id the log does not hold)."""
        wanted = np.asarray(ids, np.int64)
        rows, found = self._rows(wanted)
        if self._tree is None or not found.any():
            addrs, offsets = np.zeros(0, np.uint64), np.zeros(len(wanted) + 1, np.int64)
        else:
            addrs, offsets = self._tree.stacks(
                np.where(found, self._native[rows], 0),
                np.where(found, self._python[rows], 0),
                self._evaluation,
            )
        listed = [k for k, i in enumerate(ids) if not found[k] and i in self.listed]
        if not listed:
            return addrs.astype(np.uint64, copy=False), offsets
        parts = np.split(addrs, offsets[1:-1]) if len(wanted) else []
        for k in listed:
            parts[k] = self.listed[ids[k]].frames
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        return np.concatenate(parts).astype(np.uint64, copy=False), offsets

    def lengths_of(self, ids: list[int]) -> np.ndarray:
        """How many frames frames_of gives each of the stacks `ids` (0: one the log does
        not hold), without expanding them."""
        rows, found = self._rows(np.asarray(ids, np.int64))
        lengths = np.zeros(len(ids), np.int64)
        if self._tree is not None and found.any():
            at = rows[found]
            tree = StackTree(self._tree, self._native[at], self._python[at], self._evaluation)
            lengths[found] = tree.lengths()
        for k in np.flatnonzero(~found).tolist():
            if ids[k] in self.listed:
                lengths[k] = len(self.listed[ids[k]].frames)
        return lengths

    def tree_of(self, ids: list[int]) -> StackTree | None:
        """The stacks `ids` as leaves of the log's tree, not expanded (for the symbolizer
        to merge: symbolize); None where one of them is none of the tree's."""
        rows, found = self._rows(np.asarray(ids, np.int64))
        if self._tree is None or not found.all():
            return None
        return StackTree(self._tree, self._native[rows], self._python[rows], self._evaluation)

    def heaps_of(self, ids: list[int]) -> list[int]:
        """The heap of each of the stacks `ids`, which the log holds."""
        rows, found = self._rows(np.asarray(ids, np.int64))
        heaps = self._heaps[rows].tolist() if len(self._ids) else [0] * len(ids)
        known = zip(ids, heaps, found.tolist(), strict=True)
        return [h if ok else self.listed[i].heap for i, h, ok in known]

    def __getitem__(self, stack: int) -> Stack:
        if stack in self.listed:
            return self.listed[stack]
        rows, found = self._rows(np.array([stack], np.int64))
        if not found[0]:
            raise KeyError(stack)
        frames, _ = self.frames_of([stack])
        return Stack(int(self._heaps[rows[0]]), int(self._labels[rows[0]]), frames)

    def __contains__(self, stack: object) -> bool:
        if not isinstance(stack, (int, np.integer)):
            return False
        return stack in self.listed or bool(self._rows(np.array([stack], np.int64))[1][0])

    def __iter__(self) -> Iterator[int]:
        yield from self.listed
        yield from self._ids.tolist()

    def __len__(self) -> int:
        return len(self.listed) + len(self._ids)


@dataclass
class Mark:
    """A mark, range start or end, or step; `time_ns` counts from the window's start.

    Range ends carry the text of their start, steps the text STEP_TEXT."""

    time_ns: int
    kind: str  # one of MARK_KINDS
    id: int  # the range's id, or the step's number
    text: str
    tid: int

    @property
    def label(self) -> str:
        """How the mark is shown: its text, `step N`, or `end of TEXT`."""
        if self.kind == "step":
            return f"{STEP_TEXT} {self.id}"
        return f"end of {self.text}" if self.kind == "range_end" else self.text


@dataclass
class EventLog:
    """The records of a capture's log files, in the order they were written."""

    base: str
    pid: int
    rate: int
    device_rate: int
    start_ns: int  # CLOCK_REALTIME of the window's start; the times below count from it
    interval_ms: int
    files: list[str]
    first_file: int  # k of the oldest file read: > 1 when rotation deleted older ones
    events: np.ndarray  # EVENT_DTYPE, in the order written
    timeline: np.ndarray  # TIMELINE_DTYPE
    stacks: LogStacks
    marks: list[Mark]
    end_ns: int  # the last time recorded, from the window's start
    warnings: list[str] = field(default_factory=list)
    uses: np.ndarray = field(default_factory=lambda: np.zeros(0, USE_DTYPE))  # in time order
    use_values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))

    def rate_of(self, heap: int) -> int:
        """The sampling rate of a heap (host, or the device and HAL heaps)."""
        return self.rate if heap == 0 else self.device_rate


def heap_id(name: str) -> int:
    """The log's number of a heap name (`host`, `cuda`, ...)."""
    if name not in HEAPS:
        raise EventLogError(f"unknown heap {name!r}: one of {', '.join(HEAPS)}.")
    return HEAPS.index(name)


def locate(path: str | os.PathLike[str]) -> tuple[str, HeapProfile | None]:
    """The log base of a capture given its .heap file or one of its .memlog files, and the
    capture's .heap if there is one (a process killed during the window writes none)."""
    name = os.fspath(path)
    base = log_stem(name)
    if base is None:
        profile = read_heap(name)
        recorded = profile.meta.get("log")
        if not recorded:
            raise EventLogError(
                f"{name} has no event log: capture with --mode log"
                " (mem_profiler run --mode log ..., or mem_profiler -p PID"
                " --mode log)."
            )
        # Files moved together (to another folder or machine) are found beside the .heap,
        # under their own stem or, renamed with it (gate --save-profiles), under its stem.
        beside = os.path.join(os.path.dirname(name), os.path.basename(recorded))
        base = next((b for b in (recorded, beside, heap_stem(name)) if log_files(b)), recorded)
        return base, profile
    heap_path = heap_file(base, "host")
    return base, read_heap(heap_path) if os.path.isfile(heap_path) else None


def read_log(base: str, evaluation: tuple[int, int | None] | None = None) -> EventLog:
    """Read the newest consecutive log files of `base`; raise EventLogError if there are
    none or one is not a log of this format. Rotation's deleted files, a gap, and a file
    cut short (a killed process) are warnings in the result. `evaluation`: where the
    interpreter's evaluation loop is (context_tree.eval_range of the capture's .heap),
    which places the Python frames of a version 2 log's stacks; None: unknown."""
    files = log_files(base)
    if not files:
        raise EventLogError(
            f"no event log files {base}.<k>.memlog (deleted, or the capture"
            " was not made with --mode log?)."
        )
    newest = max(files)
    first = newest
    while first - 1 in files:
        first -= 1
    warnings = []
    if first > 1:
        gap = (
            ""
            if len(files) == newest - first + 1
            else (
                f"; files {', '.join(str(k) for k in sorted(files) if k < first)} are left"
                " over from before a gap and are not read"
            )
        )
        warnings.append(
            f"log files 1-{first - 1} of {base} were deleted by rotation"
            f" (--log-files): the log starts in file {first}, and allocations"
            f" made before it are not seen{gap}."
        )
    reader = _Reader(base, warnings)
    for k in range(first, newest + 1):
        reader.read_file(files[k], k, newest)
    return reader.result(first, evaluation)


class _Reader:
    """Accumulates the records of a run of log files."""

    def __init__(self, base: str, warnings: list[str]) -> None:
        self.base = base
        self.warnings = warnings
        self.header: tuple | None = None
        self.files: list[str] = []
        self.events: list[np.ndarray] = []  # ALLOC/FREE records, a file's at a time
        self.timeline: list[np.ndarray] = []
        self.stacks = LogStacks({})
        self.nodes: list[np.ndarray] = []  # NODE records, a file's at a time
        self.tree_stacks: list[np.ndarray] = []  # TREE_STACK records, a file's at a time
        self.marks: list[tuple[int, int, int, int, bytes]] = []  # time, kind, id, tid, text
        self.uses: list[tuple[int, int, int, int, int, bytes]] = []  # time, heap, op, flags,
        # tid, values

    def read_file(self, path: str, index: int, newest: int) -> None:
        try:
            data = read_regular(path, "an event log file", EventLogError)
        except OSError as e:
            raise EventLogError(f"cannot read {path}: {e.strerror or e}.") from None
        if len(data) < _HEADER.size and index == newest and self.header is not None:
            # rotation opened it, and the process ended before anything reached it
            self.warnings.append(f"{path} holds no records (the process was killed?).")
            return
        self._check_header(path, data, index)
        self.files.append(path)
        end = self._records(path, data)
        if end < len(data):
            self.warnings.append(
                f"{path} ends in the middle of a record (the process was killed while"
                f" writing it?): read up to byte {end} of {len(data)}."
            )

    def _check_header(self, path: str, data: bytes, index: int) -> None:
        if len(data) < _HEADER.size:
            raise EventLogError(
                f"{path} is too short for an event log header ({len(data)}"
                f" bytes): the process ended before writing its log?"
            )
        magic, version, pid, rate, device_rate, start_ns, file_index, interval_ms = (
            _HEADER.unpack_from(data)
        )
        if magic != MAGIC:
            raise EventLogError(f"{path} is not a mem_profiler event log (bad magic).")
        if version not in VERSIONS:
            raise EventLogError(
                f"{path} is an event log of format version {version}; this"
                f" mem_parser reads versions {' and '.join(map(str, VERSIONS))}: use the"
                " mem_parser of the mem_profiler that wrote it."
            )
        if start_ns >= _TIME_LIMIT:
            raise EventLogError(
                f"{path} is damaged: its window starts at {start_ns} ns, beyond any real time."
            )
        header = (pid, rate, device_rate, start_ns, interval_ms)
        if file_index != index or self.header not in (None, header):
            raise EventLogError(
                f"{path} does not belong with the other files of {self.base}"
                f" (file number {file_index}, pid {pid}): remove stray files."
            )
        self.header = header

    def _records(self, path: str, data: bytes) -> int:
        """Read the records after the header; returns where the last whole one ends."""
        n = len(data)
        pos = _HEADER.size
        runs: list[int] = []  # where each run of records of fixed size starts
        types: list[bytes] = []  # the types of its records
        while pos + _RECORD_HEAD <= n:
            end = _FIXED_RUN.match(data, pos).end()  # type: ignore[union-attr]  # * matches
            if end > pos:
                kinds = b"".join(_FIXED_TYPE.findall(data, pos, end))
                same = _same_kind(kinds)
                if same is not None:
                    size, family = same
                    more = _run(data, end, size, family)
                    kinds += data[end : end + more * size : size]
                    end += more * size
                runs.append(pos)
                types.append(kinds)
                pos = end
                continue
            rtype, length = data[pos], data[pos + 2] | data[pos + 3] << 8
            if length < _RECORD_HEAD:
                self.warnings.append(
                    f"{path}: a record of {length} bytes at byte {pos}: the"
                    " file is damaged; read up to there."
                )
                pos = n
                break
            if pos + length > n:
                break
            if rtype == STACK and length >= _STACK.size:
                _, heap, _, stack, depth, label = _STACK.unpack_from(data, pos)
                depth = min(depth, (length - _STACK.size) // 8)
                frames = np.frombuffer(data, "<u8", depth, pos + _STACK.size).astype(np.uint64)
                self.stacks.listed[stack] = Stack(heap, label, frames)
            elif rtype == TIMELINE and length == TIMELINE_DTYPE.itemsize:
                # a copy: a view would keep the whole file's bytes
                self.timeline.append(np.frombuffer(data, TIMELINE_DTYPE, 1, pos).copy())
            elif rtype == MARK and length >= _MARK.size:
                _, _, _, tid, kind, time_ns, ident = _MARK.unpack_from(data, pos)
                self.marks.append(
                    (time_ns, kind, ident, tid, data[pos + _MARK.size : pos + length])
                )
            elif rtype == USE and length >= _USE.size:
                _, heap, _, tid, op, flags, count, time_ns = _USE.unpack_from(data, pos)
                count = min(count, (length - _USE.size) // 8)
                values = data[pos + _USE.size : pos + _USE.size + 8 * count]
                self.uses.append((time_ns, heap, op, flags, tid, values))
            # other types and sizes: a later format's records, skipped by their size
            pos += length
        self._fixed_records(data, runs, types)
        return pos

    def _fixed_records(self, data: bytes, runs: list[int], types: list[bytes]) -> None:
        """Keep the records of fixed size of one file's `runs` (starts) of `types`, in
        their order: each type is copied out of the file at once."""
        kinds = np.frombuffer(b"".join(types), np.uint8)
        if not len(kinds):
            return
        sizes = _FIXED_SIZE[kinds]
        starts = np.cumsum(sizes)
        starts -= sizes  # each record's, as if the runs were one
        del sizes
        counts = np.fromiter(map(len, types), np.int64, len(types))
        firsts = np.cumsum(counts) - counts
        starts += np.repeat(np.array(runs, np.int64) - starts[firsts], counts)
        raw = np.frombuffer(data, np.uint8)

        def records(dtype: np.dtype, *of: int) -> np.ndarray:
            at = starts[np.isin(kinds, of)]
            if len(at) and at[-1] - at[0] == (len(at) - 1) * dtype.itemsize:  # one stretch
                return np.frombuffer(data, dtype, len(at), int(at[0])).copy()
            rows = np.lib.stride_tricks.sliding_window_view(raw, dtype.itemsize)[at]
            return rows.view(dtype).reshape(-1)

        self.events.append(records(EVENT_DTYPE, ALLOC, FREE))
        self.nodes.append(records(NODE_DTYPE, NODE))
        self.tree_stacks.append(records(TREE_STACK_DTYPE, TREE_STACK))

    def result(self, first: int, evaluation: tuple[int, int | None] | None) -> EventLog:
        assert self.header is not None
        self._tree_stacks(evaluation)
        pid, rate, device_rate, start_ns, interval_ms = self.header
        events = self._in_range(_joined(self.events, EVENT_DTYPE), "allocation and free")
        timeline = self._in_range(
            np.concatenate(self.timeline) if self.timeline else np.zeros(0, TIMELINE_DTYPE),
            "timeline",
        )
        for records in (events, timeline):
            records["time_ns"] -= start_ns
        in_range = [m for m in self.marks if m[0] < _TIME_LIMIT]
        self._left_out(len(self.marks) - len(in_range), "mark", "time")
        marks = _marks(in_range, start_ns)
        uses, use_values = self._uses(start_ns)
        last = [int(a["time_ns"].max()) for a in (events, timeline, uses) if len(a)]
        end_ns = max(last + [m.time_ns for m in marks[-1:]] + [0])
        return EventLog(
            self.base,
            pid,
            rate,
            device_rate,
            start_ns,
            interval_ms,
            self.files,
            first,
            events,
            timeline,
            self.stacks,
            marks,
            end_ns,
            self.warnings,
            uses,
            use_values,
        )

    def _uses(self, start_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """The device operations in time order (USE_DTYPE), and their values."""
        raw = sorted(
            (u for u in self.uses if 0 <= u[0] < _TIME_LIMIT and u[1] < len(HEAPS)),
            key=lambda u: u[0],
        )
        self._left_out(len(self.uses) - len(raw), "device operation", "heap number or time")
        uses = np.zeros(len(raw), USE_DTYPE)
        if raw:
            times, heaps, ops, flags, tids, values = zip(*raw, strict=True)
            counts = np.array([len(v) // 8 for v in values], np.int64)
            uses["time_ns"] = np.array(times, np.int64) - start_ns
            uses["heap"], uses["op"], uses["flags"], uses["tid"] = heaps, ops, flags, tids
            uses["count"] = counts
            uses["first"] = np.cumsum(counts) - counts
        return uses, np.frombuffer(b"".join(u[5] for u in raw), "<u8").astype(np.uint64)

    def _tree_stacks(self, evaluation: tuple[int, int | None] | None) -> None:
        """The stacks of the TREE_STACK records, whose frames are their nodes' merged with
        their Python frames when asked for (LogStacks; `evaluation`: the .heap's
        eval_range). Nodes are named by the sampler's ids, found in the order of their
        ids."""
        stacks = _joined(self.tree_stacks, TREE_STACK_DTYPE)
        if not len(stacks):
            return
        # a stack recorded again (in a later file) is as its last record says
        stacks = stacks[len(stacks) - 1 - np.unique(stacks["stack"][::-1], return_index=True)[1]]
        records = _joined(self.nodes, NODE_DTYPE)
        ok = (records["node"] > 0) & (records["parent"] < records["node"])
        self._left_out(int(np.count_nonzero(~ok)), "tree node", "node or parent")
        ids, first = np.unique(records["node"][ok], return_index=True)
        parents = records["parent"][ok][first]
        place = _places(ids, parents)  # 0: the root, -1: a node no file holds
        cut = place < 0
        tree = Tree(np.r_[0, np.maximum(place, 0)], np.r_[0, records["frame"][ok][first]])
        heaps, native, python = (stacks[n].astype(np.int64) for n in ("heap", "native", "python"))
        labels = stacks["label"].astype(np.uint64)
        leaves = [_places(ids, leaf) for leaf in (native, python)]
        reach_cut = tree.path_sums(np.r_[False, cut]) > 0
        missing = sum(((leaf < 0) | reach_cut[np.maximum(leaf, 0)]) for leaf in leaves)
        if missing.any():
            self.warnings.append(
                f"{np.count_nonzero(missing)} stacks of {self.base} name nodes of the"
                " calling-context tree that no file read holds (the log is damaged):"
                " their frames stop there."
            )
        ids = stacks["stack"].astype(np.int64)
        native, python = (np.maximum(leaf, 0) for leaf in leaves)
        self.stacks.hold_tree(tree, ids, (heaps, labels, native, python), evaluation)

    def _in_range(self, records: np.ndarray, what: str) -> np.ndarray:
        """The records whose heap, time and size can be real; a warning for the others."""
        ok = (records["heap"] < len(HEAPS)) & (records["time_ns"] >= 0)
        if "size" in (records.dtype.names or ()):
            ok &= records["size"] < _SIZE_LIMIT
        self._left_out(int(np.count_nonzero(~ok)), what, "heap number, time or size")
        return records if ok.all() else records[ok]

    def _left_out(self, count: int, what: str, fields: str) -> None:
        if count:
            self.warnings.append(
                f"{count} {what} records of {self.base} have a {fields} out"
                " of range (the log is damaged): they are left out."
            )


def _joined(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """The records of one type from every file, as one array."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _found(ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `values` is among the sorted `ids` (an index in range either way),
    and whether it is there."""
    index = np.minimum(np.searchsorted(ids, values), max(len(ids) - 1, 0))
    found = (ids[index] == values) if len(ids) else np.zeros(len(values), bool)
    return index, found


def _places(ids: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Where each of `nodes` is in the tree of the sorted node `ids` (1 + its index; 0 for
    the root, node 0), -1 for a node not among them."""
    nodes = np.asarray(nodes, np.int64)
    index, found = _found(ids, nodes)
    return np.where(nodes == 0, 0, np.where(found, index + 1, -1))


def _same_kind(kinds: bytes) -> tuple[int, tuple[int, ...]] | None:
    """(record size, types) when the types `kinds` of a run are _LONG_RUN events or
    nodes; None for a shorter or mixed run."""
    if len(kinds) >= _LONG_RUN:
        for family, dtype in ((ALLOC, FREE), EVENT_DTYPE), ((NODE,), NODE_DTYPE):
            if not kinds.strip(bytes(family)):
                return dtype.itemsize, family
    return None


def _run(data: bytes, pos: int, size: int, types: tuple[int, ...]) -> int:
    """How many records of `size` bytes and one of `types` follow one another from `pos`,
    their heads checked in windows growing 4x at a time."""
    n = len(data)
    head = np.dtype(
        [("type", "u1"), ("heap", "u1"), ("length", "<u2"), ("rest", f"V{size - _RECORD_HEAD}")]
    )
    total, window = 0, 4 * _LONG_RUN
    while True:
        rows = min(window, (n - pos) // size)
        heads = np.frombuffer(data, head, rows, pos)
        ok = (heads["length"] == size) & np.isin(heads["type"], types)
        if not ok.all():
            return total + int(ok.argmin())
        total += rows
        pos += rows * size
        if rows < window:
            return total
        window = min(window * 4, 1 << 20)


def _marks(raw: list[tuple[int, int, int, int, bytes]], start_ns: int) -> list[Mark]:
    """Marks in time order; range ends take their start's text."""
    starts: dict[int, str] = {}
    marks = []
    for time_ns, kind, ident, tid, text in sorted(raw, key=lambda m: m[0]):
        name = MARK_KINDS[kind] if kind < len(MARK_KINDS) else "point"
        decoded = text.decode("utf-8", "replace")
        if name == "range_start":
            starts[ident] = decoded
        elif name == "range_end":
            decoded = starts.get(ident, f"range {ident}")
        elif name == "step":
            decoded = STEP_TEXT
        marks.append(Mark(time_ns - start_ns, name, ident, decoded, tid))
    return marks
