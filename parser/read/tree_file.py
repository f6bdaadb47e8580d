"""Our tree-format `.heap` file (docs/file-formats.md, "The `.heap` file"): its
compressed stream, read within the limits it declares, its `# tree:` arrays and the
profile they make."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.input_files import (
    MAX_PROFILE_BYTES,
)
from mem_profiler.core.profile import (
    LIFETIME_BINS,
    HeapProfile,
    LiveBlocks,
    StackFigures,
    StackFrees,
)
from mem_profiler.parser.common.sampling import unsample
from mem_profiler.parser.read.context_tree import StackTree, Tree, eval_range, hal_labels
from mem_profiler.parser.read.header_lines import FRAME_LINE, Noted, header_line, python_frame_lines
from mem_profiler.parser.read.text import (
    MAPPED_LIBRARIES,
    U64_MAX,
    decode,
    read_mappings,
    show,
)

# The tree format: its first line, then a compressed stream of the text and the arrays:
# zstd (memprof_tree/2), or zlib in the files of earlier versions (memprof_tree/1).
TREE_ZSTD = b"memprof_tree/2\n"


TREE_ZLIB = b"memprof_tree/1\n"


TREE_PREFIX_LEN = len(TREE_ZSTD)


TREE_OTHER = b"memprof_tree/"  # of another version


# Compressed bytes fed at a time: at most _PIECE, and few enough that what one piece grows
# to, at most _MAX_RATIO times itself (zstd's RLE blocks: 4 bytes for 128 KiB), stays
# within what is left of the limit (at worst _MIN_PIECE times the ratio, 2 MiB, past it).
_PIECE, _MIN_PIECE, _MAX_RATIO = 16384, 64, 1 << 15


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


def parse_tree(data: bytes, name: str) -> HeapProfile:
    """A calling-context tree (docs/file-formats.md, "The `.heap` file") as the profile a
    heap_v2 file of the same stacks gives."""

    def fail(what: str) -> HeapFileError:
        return HeapFileError(f"{name}: {what}")

    text = decompressed(data[:TREE_PREFIX_LEN], data[TREE_PREFIX_LEN:], name)
    noted: list[Noted] = []
    prof, counts, at = tree_header(text, name, noted)
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


def other_tree(data: bytes, name: str) -> HeapFileError:
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
    (tree_header says what is wrong with it)."""
    counts = _TREE_RE.fullmatch(decode(tree_line[len("# tree:") :]).strip())
    if counts is None:
        return 0
    return _arrays_size(_tree_arrays(*(-1 if c is None else int(c) for c in counts.groups())))


def _tree_profile(
    prof: HeapProfile,
    arrays: dict[str, np.ndarray],
    noted: list[Noted],
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


def _piece(room: int) -> int:
    """How many compressed bytes to feed with `room` bytes left below the limit."""
    return max(_MIN_PIECE, min(_PIECE, room // _MAX_RATIO))


def _stream(first_line: bytes) -> tuple[Any, type[Exception]]:
    """A decompressor of the stream after a tree's first line, and what its library
    raises on a damaged one."""
    if first_line == TREE_ZLIB:
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


def refuse_a_cut_first_line(data: bytes, name: str) -> None:
    """A file that is the start of a tree's first line and no more."""
    if 0 < len(data) < TREE_PREFIX_LEN and (
        TREE_ZSTD.startswith(data) or TREE_ZLIB.startswith(data)
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


def tree_head_bytes(f: BinaryIO, first_line: bytes, name: str) -> bytes:
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


def tree_header(
    text: bytes, name: str, noted: list[Noted], frames: bool = True
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
        if frames and text.startswith(FRAME_LINE, start):
            start, read = python_frame_lines(prof, text, start)
            lineno += read
        end = text.find(b"\n", start)
        if not frames and text.startswith(FRAME_LINE, start):
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
