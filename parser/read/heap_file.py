"""Strict reader of `.heap` files: our tree, jemalloc's heap_v2 (with our `# key: value`
lines or without) and, through read/legacy.py, the `heap profile:` files of gperftools,
jemalloc 3 and Go."""

from __future__ import annotations

import binascii
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, TypeVar

import numpy as np

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.input_files import (
    MAX_PROFILE_BYTES,
    open_regular,
    read_errors,
    read_regular,
)
from mem_profiler.core.profile import (
    FOREIGN_KINDS,
    FRAME_BASE,
    FRAME_END,
    LIFETIME_BINS,
    Drops,
    Failure,
    Foreign,
    HeapProfile,
    LiveBlocks,
    PythonFrame,
    StackFigures,
    StackFrees,
)
from mem_profiler.parser.common.sampling import unsample
from mem_profiler.parser.read.context_tree import StackTree, Tree, eval_range, hal_labels
from mem_profiler.parser.read.legacy import is_legacy, legacy_header, parse_legacy
from mem_profiler.parser.read.pprof import GZIP_MAGIC, read_pprof
from mem_profiler.parser.read.text import (
    MAPPED_LIBRARIES,
    NO_NUL,
    U64_MAX,
    LineError,
    decode,
    read_mappings,
    show,
)

# jeprof's counter regex; group 2 is the thread ("*" for the total over threads), group
# 7 the thread's name, which a thread's line may end with (jemalloc's
# `prof_sys_thread_name`, `thread.prof.name`).
_COUNTER_RE = re.compile(
    r"^\s*(t(\*|\d+)):\s+(\d+):\s+(\d+)\s+\[\s*(\d+):\s+(\d+)\](?: (.*\S))?\s*$"
)
_HEX_RE = re.compile(r"(?:0x)?[0-9a-fA-F]{1,16}")
_HEADER_RE = re.compile(r"heap_v2/([0-9]{1,20})")
_EXPECTED_HEADER = "expected a 'heap_v2/<rate>' header"
# what else a first line may be, said after what it is
_READS = (
    " (mem_parser reads its own .heap files, jemalloc's heap_v2 and the 'heap profile:'"
    " files of gperftools, jemalloc 3 and Go)"
)


def _frame_fields(text: str) -> str:
    """The fields of a `# python_frame:` line, its name and file each matched by `text`."""
    numbers = r"0x(?P<address>[0-9a-f]{1,16}) (?P<line>-1|\d{1,10}) (?P<first_line>\d{1,10})"
    return numbers + f" (?P<name>{text})\t(?P<file>{text})"


_FRAME_RE = re.compile(_frame_fields(r"[^\t]*"))
# `# key: N` lines and the largest N each may hold.
_NUMBERS = {
    "pid": 2**31 - 1,
    "forked_from": 2**31 - 1,
    "max_depth": 2**32 - 1,
    **dict.fromkeys(
        (
            "dropped_samples",
            "failed_allocs",
            "foreign_unrecorded",
            "window_start_ns",
            "window_end_ns",
            "live_bytes",
            "peak_live_bytes",
            "peak_time_ns",
            "peak_stacks_bytes",
            "python_frames_left_out",
        ),
        U64_MAX,
    ),
}
# `#` lines whose text the sampler escapes (see _unescape), and those of them that are paths.
_ESCAPED = ("cmdline", "exe", "build_id", "log", "warning", "pool_note")
_PATHS = ("exe", "build_id", "log")
_ESCAPE_RE = re.compile(r"\\(?:([\\nrt])|x([0-7][0-9a-f])|(x.{0,2}|.?))", re.S)
_UNESCAPED = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
# The sample section exactly as our sampler writes it, for the bulk parser.
_CANONICAL_COUNTERS_RE = re.compile(rb"(?:  t\*: \d{1,18}: \d{1,18} \[\d{1,18}: \d{1,18}\]\n)*")
_ESTIMATE = "# estimate:"
# as the sampler writes an estimate (two decimals), or Python's shortest text of a
# float (--jeprof's conversions of a tree's estimates); fromstring says if it is finite
_NUMBER = rb" \d{1,20}(?:\.\d{1,17})?(?:e[+-]\d{2,3})?"
_CANONICAL_ESTIMATES_RE = re.compile(rb"(?:# estimate:" + _NUMBER * 4 + rb"\n)*")
_DROPPED_RE = re.compile(
    r"stack_table=([0-9]{1,20}) live_table=([0-9]{1,20})"
    r" memory=([0-9]{1,20}) bytes=([0-9]{1,20})"
)
_LOWER_HEX = b"0123456789abcdef"
_RIGHT_ALIGNED = np.arange(16)[None, :] >= 16 - np.arange(17)[:, None]  # row k: last k True
_CHUNK = 1 << 20
# The tree format: its first line, then a compressed stream of the text and the arrays:
# zstd (memprof_tree/2), or zlib in the files of earlier versions (memprof_tree/1).
_TREE_ZSTD = b"memprof_tree/2\n"
_TREE_ZLIB = b"memprof_tree/1\n"
_TREE_PREFIX_LEN = len(_TREE_ZSTD)
_TREE_OTHER = b"memprof_tree/"  # of another version
# Compressed bytes fed at a time: at most _PIECE, and few enough that what one piece grows
# to, at most _MAX_RATIO times itself (zstd's RLE blocks: 4 bytes for 128 KiB), stays
# within what is left of the limit (at worst _MIN_PIECE times the ratio, 2 MiB, past it).
_PIECE, _MIN_PIECE, _MAX_RATIO = 16384, 64, 1 << 15


_FRAME_LINE = b"# python_frame:"
# a `# python_frame:` line exactly as our sampler writes it, for the bulk reader: nothing
# escaped, nothing around the fields
_CANONICAL_FRAME_RE = re.compile(
    ("# python_frame: " + _frame_fields(r"[^\t\n\\]*") + "\n").encode()
)
_TREE_HEAD_LIMIT = 256 << 20  # what read_heap_header decompresses at most
# the most frames of one chain of a tree (the sampler's keep at most 128 native frames
# and 64 Python ones)
_MAX_CHAIN = 4096
# what a tree's text lines may expand to (its arrays aside): this many times its compressed
# stream, and at least the floor
_EXPANSION, _EXPANSION_FLOOR = 256, 64 << 20
_TREE_HEADER_RE = re.compile(r"heap_tree/([0-9]{1,20})")
_TREE_LINE = b"\n# tree: "
_TREE_RE = re.compile(
    r"frames=([0-9]{1,10}) nodes=([0-9]{1,10}) stacks=([0-9]{1,10})"
    r" estimates=([0-9]{1,10}) labels=([01])(?: peaks=([0-9]{1,10}))?"
    r"(?: unreachable=([0-9]{1,10}))?(?: lifetimes=([0-9]{1,10}))?(?: blocks=([0-9]{1,10}))?"
)
_COUNTERS = ("cur_objs", "cur_bytes", "acc_objs", "acc_bytes")
_UNSHUFFLED = ("est", "peak_est", "unreachable_est")  # a tree's arrays stored as they are
_FREED_BINS = len(LIFETIME_BINS) - 1  # a window's frees by lifetime: those but `live`
# addresses, offsets, counters (stacks, 4) and estimates (stacks, 4) or None
_Samples = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]
_Note = TypeVar("_Note", Failure, Foreign)
_Noted = tuple["Failure | Foreign", int]  # a tree's noted event, and the id of its stack
_PYTHON_RE = re.compile(r"\S{1,64} 0x[0-9a-f]{1,16}(?: 0x[0-9a-f]{1,16})?")


# The lines of noted events: their decimal fields, checked below 2^64, and their stack:
# its addresses in a heap_v2 file, its id (a row of `stack_id`, -1: none) in a tree.
_NOTE_NUMBERS = ("time_ns", "bytes", "error")
_NOTE_STACK = r" @(?P<stack>(?: (?:0x)?[0-9a-f]{1,16})*)"
_NOTE_STACK_ID = r" stack=(?P<stack_id>-1|[0-9]{1,10})"
_FAILURE = (
    r"time_ns=(?P<time_ns>[0-9]{1,20}) bytes=(?P<bytes>[0-9]{1,20})"
    r" error=(?P<error>-?[0-9]{1,20})"
)
_FOREIGN = (
    r"time_ns=(?P<time_ns>[0-9]{1,20}) bytes=(?P<bytes>[0-9]{1,20})"
    rf" kind=(?P<kind>{'|'.join(FOREIGN_KINDS)})"
    r" address=0x(?P<address>[0-9a-f]{1,16})"
)
_FAILURE_RE, _FAILURE_ID_RE = (
    re.compile(_FAILURE + tail) for tail in (_NOTE_STACK, _NOTE_STACK_ID)
)
_FOREIGN_RE, _FOREIGN_ID_RE = (
    re.compile(_FOREIGN + tail) for tail in (_NOTE_STACK, _NOTE_STACK_ID)
)


def read_heap(path: str | os.PathLike[str]) -> HeapProfile:
    """Read and validate a .heap file; raise HeapFileError on any problem."""
    name = os.fspath(path)
    with read_errors(name, HeapFileError):
        data = read_regular(name, "a .heap file", HeapFileError)
    return parse_heap(data, name)


def _header_bytes(f: BinaryIO) -> bytes:
    """The first line and the `#` lines that follow it, up to the first other line (a
    counter or a stack): read chunk by chunk however far that is, since a Python
    program's frame lines alone can take megabytes, and never further."""
    head = bytearray()
    line_at = first_end = 0  # the line being read; where the second line begins
    while chunk := f.read(_CHUNK):
        searched = len(head)  # each byte is searched once: a line may take gigabytes
        head += chunk
        if not first_end:
            first_end = head.find(b"\n") + 1
            if not first_end:
                return bytes(head)  # no first line in a chunk: not a .heap file's header
        while (end := head.find(b"\n", max(line_at, searched))) >= 0:
            if line_at >= first_end and head[line_at : line_at + 1] != b"#":
                return bytes(head[:line_at])
            line_at = end + 1
    return bytes(head)


def read_heap_header(path: str | os.PathLike[str]) -> HeapProfile:
    """Only the `#` lines before the first stack (who ran, with which build-ids): what a
    command needs to know before it reads the whole file. HeapFileError on a problem."""
    path = os.fspath(path)
    with read_errors(path, HeapFileError), open_regular(path, "a .heap file", HeapFileError) as f:
        first = f.read(_TREE_PREFIX_LEN)
        _refuse_a_cut_first_line(first, path)
        if first in (_TREE_ZSTD, _TREE_ZLIB):
            return _tree_header(_tree_head_bytes(f, first, path), path, [], frames=False)[0]
        if first.startswith(_TREE_OTHER):
            raise _other_tree(first + f.readline(64), path)
        if first.startswith(GZIP_MAGIC):  # pprof's: its header is the whole of it
            return read_heap(path)
        f.seek(0)
        if is_legacy(first):
            return legacy_header(f.read(_CHUNK), path)
        lines = decode(_header_bytes(f)).split("\n")
    if _HEADER_RE.fullmatch(lines[0].strip()) is None:
        raise HeapFileError(f"{path}:1: {_EXPECTED_HEADER}, found {show(lines[0])}{_READS}")
    prof = HeapProfile(path=path, rate=0)
    for lineno, line in enumerate(lines[1:], 2):
        if line[:1] == "#":
            try:
                header_line(prof, line)
            except ValueError as e:
                raise HeapFileError(f"{path}:{lineno}: {e}") from None
    return prof


def parse_heap(data: str | bytes, name: str = "<heap>") -> HeapProfile:
    """Parse the contents of a .heap file; `name` is used in error messages.

    The sample section, when written exactly as our sampler writes it, is parsed in
    bulk; anything else (jemalloc's per-thread lines, blank or '#' lines among the
    stacks, an error) goes through the line-by-line reader, which names the offending
    line."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    _refuse_a_cut_first_line(data, name)
    if data[:_TREE_PREFIX_LEN] in (_TREE_ZSTD, _TREE_ZLIB):
        return _parse_tree(data, name)
    if data.startswith(_TREE_OTHER):
        raise _other_tree(data, name)
    if data.startswith(GZIP_MAGIC):
        return read_pprof(data, name)
    if is_legacy(data):
        return parse_legacy(data, name)
    first = data.find(b"\n@")
    maps_at = data.find(b"\n" + MAPPED_LIBRARIES.encode())
    samples = _bulk_samples(data, first + 1, maps_at) if 0 <= first < maps_at else None
    if samples is None:
        lines = decode(data).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        numbered: Iterable[tuple[int, str]] = enumerate(lines, 1)
    else:
        head = decode(data[:first]).split("\n")
        maps_lineno = data.count(b"\n", 0, maps_at) + 2
        numbered = [
            *enumerate(head, 1),
            *enumerate(decode(data[maps_at + 1 :]).split("\n"), maps_lineno),
        ]
    return _parse_lines(numbered, name, samples)


def _parse_tree(data: bytes, name: str) -> HeapProfile:
    """A calling-context tree (docs/file-formats.md, "The `.heap` file") as the profile a
    heap_v2 file of the same stacks gives."""

    def fail(what: str) -> HeapFileError:
        return HeapFileError(f"{name}: {what}")

    text = decompressed(data[:_TREE_PREFIX_LEN], data[_TREE_PREFIX_LEN:], name)
    noted: list[_Noted] = []
    prof, counts, at = _tree_header(text, name, noted)
    *_, peaks, unreachable, lifetimes, blocks = counts
    shapes = _tree_arrays(*counts)
    size = _arrays_size(shapes)
    if len(text) < at + size:
        raise fail(
            f"the tree's arrays are cut short: its '# tree:' line says {size:,} bytes,"
            f" {len(text) - at:,} follow it (the file is damaged)"
        )
    arrays = {}
    for key, dtype, length in shapes:
        arrays[key] = (
            unshuffle(text, dtype, length, at)
            if key not in _UNSHUFFLED
            else np.frombuffer(text, dtype, length, at)
        )
        at += arrays[key].nbytes
    # `up` is each node's distance to its caller: the parent array from it
    arrays["parent"] = np.arange(1, len(arrays["up"]) + 1, dtype=np.int64) - arrays["up"]
    maps_end = text.find(b"\n", at + 1)
    if text[at : maps_end if maps_end >= 0 else len(text)] != b"\n" + MAPPED_LIBRARIES.encode():
        raise fail(
            f"expected '{MAPPED_LIBRARIES}' right after the tree's arrays, found"
            f" {show(decode(text[at + 1 : at + 61]))} (the file is damaged)"
        )
    maps_lineno = text.count(b"\n", 0, at) + 4  # the lines as if decompressed in place
    maps = decode(text[maps_end + 1 :]).split("\n") if maps_end >= 0 else []
    read_mappings(
        prof, enumerate(maps, maps_lineno), lambda n, what: HeapFileError(f"{name}:{n}: {what}")
    )
    _tree_profile(prof, arrays, noted, fail)
    if peaks >= 0:
        prof.peak = _stack_figures(arrays, "peak", fail)
    if unreachable >= 0:
        prof.unreachable = _stack_figures(arrays, "unreachable", fail)
    if lifetimes >= 0:
        prof.frees = _stack_frees(arrays, fail)
    if blocks >= 0:
        prof.live_blocks = _live_blocks(arrays, fail)
    return prof


def _figure_arrays(name: str, count: int) -> list[tuple[str, str, int]]:
    """The arrays of a tree's figures of some stacks (`peaks=`, `unreachable=`; -1:
    none): their rows, samples, bytes and estimates."""
    count = max(count, 0)
    return [
        (f"{name}_row", "<u4", count),
        (f"{name}_samples", "<u8", count),
        (f"{name}_bytes", "<u8", count),
        (f"{name}_est", "<f8", 2 * count),
    ]


def _profile_rows(
    arrays: dict[str, np.ndarray], name: str, fail: Callable[[str], HeapFileError]
) -> tuple[np.ndarray, int]:
    """The profile's rows of the stacks that a tree's figures `name` are of, and how many
    rows the profile has (those of the stacks with counts)."""
    kept = np.asarray(np.column_stack([arrays[counter] for counter in _COUNTERS]).any(axis=1))
    rows = arrays[f"{name}_row"]
    if (rows >= len(kept)).any() or not kept[rows].all():
        raise fail(
            f"a stack of the {name} figures that the tree does not count (the file is damaged)"
        )
    return (np.cumsum(kept) - 1)[rows], int(kept.sum())


def _stack_figures(
    arrays: dict[str, np.ndarray], name: str, fail: Callable[[str], HeapFileError]
) -> StackFigures:
    """What each of the profile's stacks held, from a tree's figures of some of them."""
    at, rows = _profile_rows(arrays, name, fail)
    est = arrays[f"{name}_est"].reshape(-1, 2)
    counters = np.column_stack([arrays[f"{name}_samples"], arrays[f"{name}_bytes"]])
    if (counters >= np.uint64(2**63)).any() or not (np.isfinite(est) & (est >= 0)).all():
        raise fail(f"a {name} figure out of range (the file is damaged)")
    figures = StackFigures(np.zeros((rows, 2), np.int64), np.zeros((rows, 2), np.float64))
    figures.counters[at] = counters.astype(np.int64)
    figures.estimates[at] = est
    return figures


def _stack_frees(arrays: dict[str, np.ndarray], fail: Callable[[str], HeapFileError]) -> StackFrees:
    """Each of the profile's stacks' sampled frees, from a tree's `lifetimes=` arrays."""
    at, rows = _profile_rows(arrays, "lifetimes", fail)
    temporary_bytes = arrays["lifetimes_temporary_bytes"]
    if (temporary_bytes >= np.uint64(2**63)).any():
        raise fail("a temporary allocations' size out of range (the file is damaged)")
    frees = StackFrees(np.zeros((rows, _FREED_BINS), np.int64), np.zeros((rows, 2), np.int64))
    frees.by_lifetime[at] = np.column_stack(
        [arrays[f"lifetimes_freed_{b}"] for b in range(_FREED_BINS)]
    )
    frees.temporary[at] = np.column_stack(
        [arrays["lifetimes_temporary"], temporary_bytes.astype(np.int64)]
    )
    return frees


def _live_blocks(arrays: dict[str, np.ndarray], fail: Callable[[str], HeapFileError]) -> LiveBlocks:
    """A device heap's live samples, from a tree's `blocks=` arrays."""
    at, rows = _profile_rows(arrays, "block", fail)
    size = arrays["block_size"]
    if (size >= np.uint64(2**63)).any():
        raise fail("a live block's size out of range (the file is damaged)")
    return LiveBlocks(at, arrays["block_address"].copy(), size.astype(np.int64))


def unshuffle(data: bytes, dtype: str, length: int, at: int) -> np.ndarray:
    """`length` values of `dtype` stored byte-shuffled at `at`: the lowest byte of every
    value, then the next, and so on."""
    width = np.dtype(dtype).itemsize
    planes = np.frombuffer(data, np.uint8, width * length, at).reshape(width, length)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(length)


def _other_tree(data: bytes, name: str) -> HeapFileError:
    """The error for a tree of a version this reader does not know."""
    first = decode(data.partition(b"\n")[0][:64])
    # the format's own name, which the reader recognized as a tree's, is no file's content
    version = first if re.fullmatch(r"memprof_tree/\d{1,9}", first) else show(first)
    return HeapFileError(
        f"{name}:1: a .heap file of format {version}; this mem_parser reads"
        " memprof_tree/1 and /2 and heap_v2: use the mem_parser of the mem_profiler that wrote it"
    )


def _tree_arrays(
    frames: int,
    nodes: int,
    stacks: int,
    estimates: int,
    labels: int,
    peaks: int,
    unreachable: int,
    lifetimes: int,
    blocks: int,
) -> list[tuple[str, str, int]]:
    """The name, type and length of a tree's arrays, in order, from its `# tree:` counts."""
    return [
        ("frame", "<u8", frames),
        ("up", "<u4", nodes),
        ("node_frame", "<u4", nodes),
        ("stack_id", "<u4", stacks),
        ("native", "<u4", stacks),
        ("python", "<u4", stacks),
        *((counter, "<u8", stacks) for counter in _COUNTERS),
        ("est_row", "<u4", estimates),
        ("est", "<f8", 4 * estimates),
        ("label", "<u8", stacks * labels),
        *_figure_arrays("peak", peaks),
        *_figure_arrays("unreachable", unreachable),
        ("lifetimes_row", "<u4", max(lifetimes, 0)),
        *((f"lifetimes_freed_{b}", "<u4", max(lifetimes, 0)) for b in range(_FREED_BINS)),
        ("lifetimes_temporary", "<u4", max(lifetimes, 0)),
        ("lifetimes_temporary_bytes", "<u8", max(lifetimes, 0)),
        ("block_row", "<u4", max(blocks, 0)),
        ("block_address", "<u8", max(blocks, 0)),
        ("block_size", "<u8", max(blocks, 0)),
    ]


def _arrays_size(shapes: list[tuple[str, str, int]]) -> int:
    return sum(np.dtype(dtype).itemsize * length for _, dtype, length in shapes)


def _tree_line(text: bytearray, seen: int, marker: bytes = _TREE_LINE) -> tuple[bytes | None, int]:
    """The `# tree:` line (or another `marker`'s) of a tree's text being decompressed,
    once it is there whole (searched for from `seen` on), and where to search for it next
    time."""
    at = text.find(marker, seen)
    if at < 0:
        return None, max(len(text) - len(marker) + 1, 0)
    end = text.find(b"\n", at + 1)
    return (bytes(text[at + 1 : end]) if end >= 0 else None), at


def _declared_arrays_size(tree_line: bytes) -> int:
    """The bytes of arrays that a `# tree:` line counts; 0 for a line that does not parse
    (_tree_header says what is wrong with it)."""
    counts = _TREE_RE.fullmatch(decode(tree_line[len("# tree:") :]).strip())
    if counts is None:
        return 0
    return _arrays_size(_tree_arrays(*(-1 if c is None else int(c) for c in counts.groups())))


def _tree_profile(
    prof: HeapProfile,
    arrays: dict[str, np.ndarray],
    noted: list[_Noted],
    fail: Callable[[str], HeapFileError],
) -> None:
    """Fill `prof` with the stacks (those with counts), counters, estimates and labels of a
    tree's arrays, and the stacks of its noted events; `fail` for damage."""
    frame, parent, node_frame = arrays["frame"], arrays["parent"], arrays["node_frame"]
    nodes = len(parent)
    bad = np.flatnonzero((parent >= np.arange(1, nodes + 1)) | (parent < 0))
    if len(bad):
        k = int(bad[0]) + 1
        raise fail(
            f"node {k} of the tree has the parent {parent[k - 1]}: a node's parent comes"
            " before it (the file is damaged)"
        )
    bad = np.flatnonzero(node_frame >= len(frame))
    if len(bad):
        k = int(bad[0]) + 1
        raise fail(
            f"node {k} of the tree names frame {node_frame[k - 1]} of {len(frame)}"
            " (the file is damaged)"
        )
    for key in ("native", "python"):
        bad = np.flatnonzero(arrays[key] > nodes)
        if len(bad):
            raise fail(
                f"stack {bad[0]} names the {key} leaf node {arrays[key][bad[0]]} of a tree of"
                f" {nodes} nodes (the file is damaged)"
            )
    table = np.column_stack([arrays[counter] for counter in _COUNTERS])
    too_large = np.flatnonzero((table >= np.uint64(2**63)).any(axis=1))
    if len(too_large):
        raise fail(f"stack {too_large[0]} has a counter too large for 64 bits")
    est_row, est = arrays["est_row"], arrays["est"].reshape(-1, 4)
    if (est_row >= len(table)).any():
        raise fail(
            f"an estimate names stack {est_row[est_row >= len(table)][0]} of {len(table)}"
            " (the file is damaged)"
        )
    if not (np.isfinite(est) & (est >= 0)).all():
        raise fail("an estimate that is not a finite number of at least 0 (the file is damaged)")

    address = np.zeros(nodes + 1, np.uint64)
    address[1:] = frame[node_frame]
    tree = Tree(np.r_[0, parent], address)
    chains = np.r_[arrays["native"], arrays["python"]]
    deepest = int(tree.depth[chains].max(initial=0))
    if deepest > _MAX_CHAIN:  # stacks x depth frames would be expanded
        raise fail(
            f"a stack of {deepest:,} frames, more than the {_MAX_CHAIN:,} any tree of the"
            " sampler's holds (the file is damaged)"
        )
    evaluation = eval_range(prof)
    kept = np.asarray(table.any(axis=1))  # the others are there for the noted events only
    prof.set_stack_tree(StackTree(tree, arrays["native"][kept], arrays["python"][kept], evaluation))
    table = table[kept].astype(np.int64)
    prof.stack_ids = arrays["stack_id"][kept].astype(np.int64)
    prof.cur_objs, prof.cur_bytes, prof.acc_objs, prof.acc_bytes = (
        np.ascontiguousarray(table[:, k]) for k in range(4)
    )
    prof.estimates = np.column_stack(
        [
            *unsample(prof.cur_objs, prof.cur_bytes, prof.rate),
            *unsample(prof.acc_objs, prof.acc_bytes, prof.rate),
        ]
    )
    row = np.cumsum(kept) - 1  # a kept stack's row in the profile
    written = kept[est_row]
    prof.estimates[row[est_row[written]]] = est[written]
    if not kept.any():
        prof.estimates = None  # no stack: as a heap_v2 file of none reads
    if len(arrays["label"]):
        prof.labels = dict(enumerate(hal_labels(arrays["label"][kept])))
    if noted:
        ids = arrays["stack_id"]
        rows = [
            np.flatnonzero(ids == stack_id)[:1] if 0 <= stack_id < 2**32 else np.zeros(0, int)
            for _, stack_id in noted
        ]
        found = [len(r) > 0 for r in rows]
        chosen = np.concatenate(rows).astype(np.int64)
        addrs, offsets = tree.stacks(arrays["native"][chosen], arrays["python"][chosen], evaluation)
        stacks = iter(np.split(addrs, offsets[1:-1]))
        for (note, _), ok in zip(noted, found, strict=True):
            note.stack = tuple(next(stacks).tolist()) if ok else ()


def python_frame_lines(prof: HeapProfile, text: bytes, start: int) -> tuple[int, int]:
    """Read the `# python_frame:` lines from `start` on into prof.python_frames, as
    header_line would, while they are as our sampler writes them (a Python program has
    10^5 of them); where the first line not read starts, and how many were read. A line
    of another form (an escape, spaces at its end, damage) is left to header_line."""
    frames, read = prof.python_frames, 0
    texts: dict[bytes, str] = {}  # names and files, each decoded once
    while (m := _CANONICAL_FRAME_RE.match(text, start)) is not None:
        hex_address, line, first_line, raw_name, raw_file = m.groups()
        address = int(hex_address, 16)
        name = texts.get(raw_name) or texts.setdefault(raw_name, decode(raw_name))
        file = texts.get(raw_file) or texts.setdefault(raw_file, decode(raw_file))
        if not FRAME_BASE <= address < FRAME_END or file[-1:].isspace():
            break
        frames[address] = PythonFrame(name, file, int(line), int(first_line))
        start, read = m.end(), read + 1
    return start, read


def _piece(room: int) -> int:
    """How many compressed bytes to feed with `room` bytes left below the limit."""
    return max(_MIN_PIECE, min(_PIECE, room // _MAX_RATIO))


def _stream(first_line: bytes) -> tuple[Any, type[Exception]]:
    """A decompressor of the stream after a tree's first line, and what its library
    raises on a damaged one."""
    if first_line == _TREE_ZLIB:
        return zlib.decompressobj(), zlib.error
    import zstandard  # only for the files that need it

    return zstandard.ZstdDecompressor().decompressobj(), zstandard.ZstdError


def _damaged(name: str, e: Exception) -> HeapFileError:
    return HeapFileError(
        f"{name}: the compressed tree is damaged ({e}): this is not a whole .heap file"
    )


def decompressed(
    first_line: bytes,
    data: bytes,
    name: str,
    marker: bytes = _TREE_LINE,
    declared: Callable[[bytes], int] | None = None,
    most: int | None = None,
) -> bytes:
    """The stream after a tree's first line, decompressed into one buffer; HeapFileError,
    one line, if it is damaged, cut short or expands past what it declares (a
    decompression bomb): the arrays its `# tree:` line counts (another `marker` line's,
    by `declared`), and _EXPANSION times the stream for its text lines; never past
    `most` bytes in all (MAX_PROFILE_BYTES unless told). The arrays have no ratio of
    their own: a tree of millions of stacks with sequential ids and equal counts
    compresses 500 times and more."""
    declared = declared or _declared_arrays_size
    what = marker.decode().strip()
    stream, error = _stream(first_line)
    text_limit = max(_EXPANSION_FLOOR, _EXPANSION * len(data))
    most = MAX_PROFILE_BYTES if most is None else most
    limit, arrays = min(most, text_limit), None
    out, fed, seen = bytearray(), 0, 0
    try:
        while fed < len(data):
            piece = _piece(limit - len(out))
            out += stream.decompress(data[fed : fed + piece])
            fed += piece
            if arrays is None:
                line, seen = _tree_line(out, seen, marker)
                if line is not None:
                    arrays = declared(line)
                    limit = min(most, text_limit + arrays)
            if len(out) > limit:
                raise HeapFileError(
                    f"{name}: the compressed tree expands past {limit:,} bytes, more than the"
                    f" {arrays or 0:,} bytes of arrays its '{what}' line counts and {_EXPANSION}"
                    f" times its own {len(data):,} for the rest: not a tree the sampler wrote"
                    " (a damaged or hostile file)"
                )
            if stream.eof:
                break
    except error as e:
        raise _damaged(name, e) from None
    if not stream.eof:
        raise _cut_short(name, len(first_line) + len(data))
    unused = len(stream.unused_data) + max(len(data) - fed, 0)
    if unused:
        raise HeapFileError(
            f"{name}: {unused:,} bytes follow the compressed tree: this is not a whole .heap file"
        )
    return bytes(out)


def _refuse_a_cut_first_line(data: bytes, name: str) -> None:
    """A file that is the start of a tree's first line and no more."""
    if 0 < len(data) < _TREE_PREFIX_LEN and (
        _TREE_ZSTD.startswith(data) or _TREE_ZLIB.startswith(data)
    ):
        raise HeapFileError(
            f"{name}: the file is cut short at byte {len(data)}, inside its first line:"
            " it is truncated"
        )


def _cut_short(name: str, size: int) -> HeapFileError:
    return HeapFileError(
        f"{name}: the file is cut short at byte {size:,}, inside its compressed tree:"
        " it is truncated (written by a process that was killed, or copied in part)"
    )


def _tree_head_bytes(f: BinaryIO, first_line: bytes, name: str) -> bytes:
    """The start of a tree's text, up to its `# tree:` line, decompressed only as far as
    that (a Python program's frame lines alone can take megabytes)."""
    stream, error = _stream(first_line)
    text, read = bytearray(), len(first_line)  # grown in place: a long header stays linear
    seen = 0
    try:
        while len(text) < _TREE_HEAD_LIMIT:
            chunk = f.read(_piece(_TREE_HEAD_LIMIT - len(text)))
            if not chunk:  # the file ended before the tree's head did
                raise _cut_short(name, read)
            read += len(chunk)
            text += stream.decompress(chunk)
            line, seen = _tree_line(text, seen)
            if line is not None or stream.eof:
                break
    except error as e:
        raise _damaged(name, e) from None
    return bytes(text)


def _tree_header(
    text: bytes, name: str, noted: list[_Noted], frames: bool = True
) -> tuple[HeapProfile, tuple[int, ...], int]:
    """The profile of a tree's text lines up to its `# tree:` line (lines numbered as if
    decompressed in place: the first is `memprof_tree/1`), the counts that line gives
    (frames, nodes, stacks, estimates, labels) and where the arrays after it start.
    `noted`: see header_line. Without `frames`, the `# python_frame:` lines are
    skipped (a reader of the header alone: a Python program has 10^5 of them)."""
    end = text.find(b"\n")
    first = decode(text[: end if end >= 0 else len(text)])
    header = _TREE_HEADER_RE.fullmatch(first)
    if header is None or int(header[1]) > U64_MAX:
        raise HeapFileError(
            f"{name}:2: expected a 'heap_tree/<rate>' line (rate below 2^64), found {show(first)}"
        )
    prof = HeapProfile(path=name, rate=int(header[1]))
    lineno, line = 2, first
    while end >= 0:
        start, lineno = end + 1, lineno + 1
        if frames and text.startswith(_FRAME_LINE, start):
            start, read = python_frame_lines(prof, text, start)
            lineno += read
        end = text.find(b"\n", start)
        if not frames and text.startswith(_FRAME_LINE, start):
            continue
        line = decode(text[start : end if end >= 0 else len(text)])
        if line.startswith("# tree:"):
            counts = _TREE_RE.fullmatch(line[len("# tree:") :].strip())
            if counts is None:
                raise HeapFileError(
                    f"{name}:{lineno}: expected '# tree: frames=F nodes=N stacks=S"
                    f" estimates=E labels=0|1 [peaks=P] [unreachable=U] [lifetimes=L] [blocks=B]'"
                    f" (F, N, S, E, P, U, L, B below 2^32), found"
                    f" {show(line)}"
                )
            arrays_at = end + 1 if end >= 0 else len(text)
            # -1: a file of an earlier version, without the stacks at the peak
            return prof, tuple(-1 if c is None else int(c) for c in counts.groups()), arrays_at
        if not line.strip():
            continue
        if line[:1] != "#":
            raise HeapFileError(f"{name}:{lineno}: unexpected line {show(line)}")
        try:
            header_line(prof, line, noted)
        except ValueError as e:
            raise HeapFileError(f"{name}:{lineno}: {e}") from None
    lineno += 1 if line else 0  # the line after the last one
    raise HeapFileError(
        f"{name}:{lineno}: no '# tree:' line after the '#' lines: the file is truncated"
    )


def _bulk_samples(data: bytes, start: int, end: int) -> _Samples | None:
    """(addresses, offsets, counters, estimates) of the sample section data[start:end],
    parsed in chunks of about 1 MiB (small arrays are reused by the allocator: fresh pages
    for the whole file would cost more than the parsing); None if it is not written as
    our sampler writes it."""
    # the addresses go straight into their array, which is most of the memory: counted
    # first, rather than concatenated from the chunks' at the end
    addrs = np.empty(data.count(b" 0x", start, end), np.uint64)
    filled, parts = 0, []
    while start < end:
        cut = data.find(b"\n@", start + _CHUNK, end)
        cut = end if cut < 0 else cut
        part = _bulk_chunk(data[start:cut].rstrip(b"\n"))
        if part is None or filled + len(part[0]) > len(addrs):
            return None
        addrs[filled : filled + len(part[0])] = part[0]
        filled += len(part[0])
        parts.append(part[1:])
        start = cut + 1
    lengths, tables, estimates = zip(*parts, strict=True)
    if filled != len(addrs) or (
        any(e is None for e in estimates) and not all(e is None for e in estimates)
    ):
        return None
    offsets = np.zeros(sum(map(len, lengths)) + 1, np.int64)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return (
        addrs,
        offsets,
        np.concatenate(tables),
        None if estimates[0] is None else np.concatenate(estimates),
    )


def _bulk_chunk(
    section: bytes,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(addresses, stack lengths, counters, estimates or None) of whole '@ 0x..' lines
    each followed by one '  t*: ' line and, in files that have them, one '# estimate:'
    line, exactly as our sampler writes them; None for anything else."""
    lines = section.split(b"\n")
    step = 3 if len(lines) > 2 and lines[2].startswith(_ESTIMATE.encode()) else 2
    stacks, counters = lines[0::step], lines[1::step]
    counter_text = b"\n".join(counters) + b"\n"
    if len(stacks) != len(counters) or not _CANONICAL_COUNTERS_RE.fullmatch(counter_text):
        return None
    if not all(line[:2] == b"@ " for line in stacks):
        return None
    estimates = None
    if step == 3:
        estimate_text = b"\n".join(lines[2::3]) + b"\n"
        if len(lines) % 3 or not _CANONICAL_ESTIMATES_RE.fullmatch(estimate_text):
            return None
        estimates = np.fromstring(
            estimate_text.replace(_ESTIMATE.encode(), b""), np.float64, sep=" "
        ).reshape(-1, 4)
        if not np.isfinite(estimates).all():  # the line parser names the line
            return None
    found = _same_width_addresses(stacks) or _addresses(stacks)
    if found is None:
        return None
    table = np.fromstring(counter_text.translate(None, b"t*:[]"), np.int64, sep=" ")
    return *found, table.reshape(-1, 4), estimates


def _same_width_addresses(stacks: list[bytes]) -> tuple[np.ndarray, np.ndarray] | None:
    """(addresses, stack lengths) when every address is written with the same even
    number of hex digits (addresses of one process usually are): the lines are then a
    matrix of ' 0x<digits>' cells. None if they are not."""
    after_first = stacks[0].find(b" ", 2)  # the space after the first address, if any
    width = (after_first if after_first > 0 else len(stacks[0])) - 1  # of ' 0x<digits>'
    sizes = np.fromiter(map(len, stacks), np.int64, len(stacks)) - 1  # without the '@'
    lengths, rest = np.divmod(sizes, max(width, 1))
    if not 3 < width < 20 or (width - 3) % 2 or rest.any() or not lengths.all():
        return None
    cells = b"".join(stacks).translate(None, b"@")
    if len(cells) != sizes.sum():  # an '@' inside a line
        return None
    matrix = np.frombuffer(cells, np.uint8).reshape(-1, width)
    if (matrix[:, :3] != np.frombuffer(b" 0x", np.uint8)).any():
        return None
    try:
        decoded = np.frombuffer(binascii.unhexlify(matrix[:, 3:].tobytes()), np.uint8)
    except binascii.Error:
        return None
    padded = np.zeros((len(matrix), 8), np.uint8)
    padded[:, 8 - (width - 3) // 2 :] = decoded.reshape(len(matrix), -1)
    return padded.view(">u8").ravel().astype(np.uint64), lengths


def _addresses(stacks: list[bytes]) -> tuple[np.ndarray, np.ndarray] | None:
    """(addresses, stack lengths) of '@ 0x..' lines; None unless every address is
    '0x' and 1 to 16 lower-case hex digits, one space apart."""
    region = b"".join(stacks).replace(b" 0x", b" ")
    if region.translate(None, _LOWER_HEX + b" @"):
        return None
    chars = np.frombuffer(region, np.uint8)
    delims = np.flatnonzero((chars == ord(" ")) | (chars == ord("@")))
    widths = np.diff(delims, append=len(chars)) - 1  # characters after each delimiter
    at = chars[delims] == ord("@")
    digits = widths[~at]
    if at.sum() != len(stacks) or widths[at].any() or digits.min() < 1 or digits.max() > 16:
        return None
    # Right-align every address in 16 hex digits, then decode them all at once.
    text = np.full((len(digits), 16), ord("0"), np.uint8)
    text[_RIGHT_ALIGNED[digits]] = np.frombuffer(region.translate(None, b" @"), np.uint8)
    addrs = np.frombuffer(binascii.unhexlify(text.tobytes()), ">u8").astype(np.uint64)
    return addrs, np.diff(np.flatnonzero(at), append=len(delims)) - 1


def _parse_lines(
    numbered: Iterable[tuple[int, str]], name: str, samples: _Samples | None
) -> HeapProfile:
    """Read (line number, line) pairs; `samples`, if given, is the already parsed sample
    section (then absent from the lines)."""
    lines = list(numbered)
    if lines and lines[-1][1] == "":
        lines.pop()
    if not lines:
        raise HeapFileError(f"{name}:1: the file is empty, {_EXPECTED_HEADER}")

    def fail(lineno: int, what: str) -> HeapFileError:
        return HeapFileError(f"{name}:{lineno}: {what}")

    header = _HEADER_RE.fullmatch(lines[0][1].strip())
    if header is None:
        raise fail(1, f"{_EXPECTED_HEADER}, found {show(lines[0][1])}{_READS}")
    rate = int(header.group(1))
    if rate > U64_MAX:
        raise fail(1, f"a sampling rate above 2^64-1 in {show(lines[0][1])}")
    prof = HeapProfile(path=name, rate=rate)
    end = lines[-1][0] + 1

    counters: list[tuple[int, int, int, int]] = []
    estimates: list[tuple[float, ...]] = []
    values: dict[str, int] = {}  # hex token -> address; stacks share most of their frames
    addrs: list[int] = []
    lengths: list[int] = []
    awaiting = 0  # line number of a stack still waiting for its t* line
    maps_at = 0
    for i, (lineno, line) in enumerate(lines[1:], 1):
        if awaiting:
            m = _COUNTER_RE.match(line)
            if m is None or m[2] != "*" or m[7] is not None:
                raise fail(
                    lineno,
                    f"expected a counter line after the stack on line {awaiting}"
                    f" ('t*: <objs>: <bytes> [<objs>: <bytes>]'), found {show(line)}",
                )
            if max(len(m[3]), len(m[4]), len(m[5]), len(m[6])) > 18:
                raise fail(lineno, "a counter too large for 64 bits")
            counters.append((int(m[3]), int(m[4]), int(m[5]), int(m[6])))
            awaiting = 0
        elif line[:1] == "@":
            parts = line.split()
            if parts[0] != "@" or len(parts) == 1:
                raise fail(lineno, f"expected '@' followed by hex addresses, found {show(line)}")
            del parts[0]
            for token in parts:
                if token not in values:
                    if _HEX_RE.fullmatch(token) is None:
                        raise fail(lineno, f"a bad address in the stack ({show(token)})")
                    values[token] = int(token, 16)
            addrs.extend(map(values.__getitem__, parts))
            lengths.append(len(parts))
            awaiting = lineno
        elif line.startswith(_ESTIMATE):
            if len(estimates) != len(counters) - 1 or not lengths:
                raise fail(
                    lineno, "an '# estimate:' line that does not follow a stack's counter line"
                )
            estimates.append(_estimate(line, lineno, fail))
        elif line[:1] == "#":
            try:
                header_line(prof, line)
            except ValueError as e:
                raise fail(lineno, str(e)) from None
            if line.startswith("# labels:"):  # of the stack on the next '@' line
                prof.labels[len(lengths)] = prof.meta.pop("labels")
        elif line.startswith(MAPPED_LIBRARIES):
            maps_at = i + 1
            break
        elif line.lstrip()[:1] == "t":
            m = _COUNTER_RE.match(line)
            if m is None or (m[2] == "*" and m[7] is not None):
                raise fail(lineno, f"garbled counter line {show(line)}")
            if lengths and m[2] == "*":
                raise fail(lineno, "a second 't*' counter line for one stack")
        elif line.strip():
            raise fail(lineno, f"unexpected line {show(line)}")
    if awaiting:
        raise fail(
            end,
            f"expected a counter line after the stack on line {awaiting}, the file is truncated",
        )
    if not maps_at:
        raise fail(end, f"the file is truncated: no '{MAPPED_LIBRARIES}' section")

    read_mappings(prof, lines[maps_at:], fail)

    if samples is None:
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        samples = (
            np.array(addrs, np.uint64),
            offsets,
            np.array(counters, dtype=np.int64).reshape(-1, 4),
            np.array(estimates, np.float64).reshape(-1, 4)
            if len(estimates) == len(counters) and estimates
            else None,
        )
    prof.addrs, prof.offsets, table, prof.estimates = samples
    prof.cur_objs, prof.cur_bytes, prof.acc_objs, prof.acc_bytes = (
        np.ascontiguousarray(table[:, k]) for k in range(4)
    )
    return prof


def _estimate(line: str, lineno: int, fail: LineError) -> tuple[float, ...]:
    """The four sums of a `# estimate:` line."""
    fields = line[len(_ESTIMATE) :].split()
    try:
        values = tuple(float(v) for v in fields)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise fail(
            lineno, f"expected '{_ESTIMATE} <objs> <bytes> <objs> <bytes>', found {show(line)}"
        )
    return values


# noted events: their pattern with a stack of addresses (heap_v2) and with a stack id
# (a tree), and the form of their fields
_NOTES = {
    "failed_alloc": (_FAILURE_RE, _FAILURE_ID_RE, "time_ns=T bytes=N error=E"),
    "foreign": (
        _FOREIGN_RE,
        _FOREIGN_ID_RE,
        f"time_ns=T bytes=N kind={'|'.join(FOREIGN_KINDS)} address=0xA",
    ),
}


def header_line(prof: HeapProfile, line: str, noted: list[_Noted] | None = None) -> None:
    """Store one `# ...` line in `prof`; ValueError says what is wrong with it. `noted`
    (a tree's lines): the noted events name their stacks by id, each listed there with
    its id for the reader to fill in."""
    body = line[1:].strip()
    if body.startswith("mem_profiler "):
        prof.version = body.split(None, 1)[1]
        return
    key, sep, value = body.partition(":")
    if not sep:
        return  # a free-form comment
    key, value = key.strip(), value.strip()
    if key in _ESCAPED:
        value = _unescape(value, key)
    if key in _PATHS and "\0" in value:
        raise ValueError(f"the path in '# {key}:' holds {NO_NUL}")
    if key in _NUMBERS:
        number = _number(value, _NUMBERS[key])
        if number is None:
            raise ValueError(
                f"'{key}' must be a number from 0 to {_NUMBERS[key]}, found {show(value)}"
            )
        if key in ("pid", "dropped_samples"):
            setattr(prof, key, number)
        else:
            prof.meta[key] = value
    elif key == "dropped":
        m = _DROPPED_RE.fullmatch(value)
        counts = [_number(v, U64_MAX) for v in m.groups()] if m else [None]
        if None in counts:
            raise ValueError(
                "expected '# dropped: stack_table=N live_table=N memory=N "
                f"bytes=N' (N below 2^64), found {show(line)}"
            )
        prof.drops = Drops(*counts)
    elif key == "heap":
        if value not in HEAPS:
            raise ValueError(f"unknown heap {show(value)}: expected one of {', '.join(HEAPS)}")
        prof.heap = value
    elif key in ("cmdline", "exe"):
        setattr(prof, key, value)
    elif key == "warning":
        prof.warnings.append(value)
    elif key in _NOTES:
        by_addresses, by_id, form = _NOTES[key]
        tail = "@ ..." if noted is None else "stack=<id>"
        m = _note(by_addresses if noted is None else by_id, value, line, f"{key}: {form} {tail}")
        times = int(m["time_ns"]), int(m["bytes"])
        if key == "failed_alloc":
            prof.failures.append(_noted_stack(Failure(*times, int(m["error"]), ()), m, noted))
        else:
            foreign = Foreign(*times, m["kind"], int(m["address"], 16), ())
            prof.foreign.append(_noted_stack(foreign, m, noted))
    elif key == "python":
        if _PYTHON_RE.fullmatch(value) is None:
            raise ValueError(
                "expected '# python: <version> 0x<start> [0x<end>]' (the addresses of"
                f" _PyEval_EvalFrameDefault), found {show(line)}"
            )
        prof.meta[key] = value
    elif key == "python_frame":
        address, frame = parse_frame_line(value)
        prof.python_frames[address] = frame
    elif key == "build_id":
        obj, _, hexid = value.rpartition(" ")
        if not obj or not re.fullmatch(r"[0-9a-fA-F]+", hexid):
            raise ValueError(f"expected '# build_id: <path> <hex>', found {show(line)}")
        prof.build_ids[obj] = hexid.lower()
    else:
        prof.meta[key] = value


def parse_frame_line(value: str) -> tuple[int, PythonFrame]:
    """The address and frame of a `# python_frame:` line's value (name and file
    escaped, a tab between them); ValueError says what is wrong."""
    m = _FRAME_RE.fullmatch(value)
    address = int(m["address"], 16) if m else 0
    if m is None or not FRAME_BASE <= address < FRAME_END:
        raise ValueError(
            "expected '# python_frame: 0x<address> <line> <first line>"
            f" <name>\\t<file>' with an address from 0x{FRAME_BASE:x}, found"
            f" {value[:60]!r}"
        )
    return address, PythonFrame(
        _unescape(m["name"], "python_frame"),
        _unescape(m["file"], "python_frame"),
        int(m["line"]),
        int(m["first_line"]),
    )


def _note(pattern: re.Pattern[str], value: str, line: str, form: str) -> re.Match[str]:
    """The fields of a noted event's line (`# failed_alloc:`, `# foreign:`), its numbers
    below 2^64; ValueError naming the `form` expected otherwise."""
    m = pattern.fullmatch(value)
    if m is None or any(
        _number(m[k].lstrip("-"), U64_MAX) is None for k in _NOTE_NUMBERS if k in pattern.groupindex
    ):
        raise ValueError(f"expected '# {form}' (T and N below 2^64), found {show(line)}")
    return m


def _noted_stack(note: _Note, m: re.Match[str], noted: list[_Noted] | None) -> _Note:
    """`note` with the stack of its line: the addresses, ' 0x...' each, leaf first; or,
    in a tree, listed in `noted` with the id of its stack."""
    if noted is None:
        note.stack = tuple(int(a, 16) for a in m["stack"].split())
    else:
        noted.append((note, int(m["stack_id"])))
    return note


def _number(text: str, limit: int) -> int | None:
    """The decimal number `text` (ASCII digits only), None unless it is 0 to `limit`."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(limit)):
        return None
    number = int(text)
    return number if number <= limit else None


def _unescape(text: str, key: str) -> str:
    """Undo the sampler's escape of control characters in the text of `# key:` lines:
    \\\\, \\n, \\r, \\t, and \\xHH (two lower-case hex digits) for the other bytes
    below 0x20 and 0x7f; ValueError for any other backslash."""

    def one(m: re.Match) -> str:
        if m[1]:
            return _UNESCAPED[m[1]]
        if m[2]:
            return chr(int(m[2], 16))
        shown = ascii(m[3])[1:-1] if m[3] else " at the end of the line"
        raise ValueError(
            f"a malformed escape \\{shown} in '# {key}:' (the sampler writes"
            " only \\\\, \\n, \\r, \\t and \\xHH)"
        )

    return _ESCAPE_RE.sub(one, text) if "\\" in text else text
