"""The profile as jemalloc's heap_v2 text, which `jeprof` reads (mem_parser --jeprof).

The raw samples by stack, their addresses as they were (jeprof symbolizes them itself
through the memory map), then the memory map; our `#` lines, which jeprof skips, carry
the rest of the HeapProfile, so that heap_file reads the text back as the profile it was
written from (docs/file-formats.md, *Files that start with heap_v2/*):

    heap_v2/<rate>
    # mem_profiler <version>, # pid:, ..., # build_id:, # python_frame:, # failed_alloc:
      t*: <cur objs>: <cur bytes> [<acc objs>: <acc bytes>]        (the totals)
    # labels: ...                                                  (hal: the next stack's)
    @ 0x<leaf> ... 0x<root>
      t*: <cur objs>: <cur bytes> [<acc objs>: <acc bytes>]
    # estimate: <cur objs> <cur bytes> <acc objs> <acc bytes>
    MAPPED_LIBRARIES:
    <start>-<end> <perms> <offset> 00:00 0 <path>

Written in pieces of a few megabytes, never whole: 400,000 stacks of 100 frames make
hundreds of megabytes of text, and their addresses as many; a tree's stacks are expanded
a run at a time. The addresses of a piece are formatted by numpy."""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.read.context_tree import StackTree

if TYPE_CHECKING:
    from mem_profiler.parser.report.formats import Rendering


_PIECE_FRAMES = 1 << 18  # addresses per piece written: about 4 MB of text
_RUN_FRAMES = 1 << 21  # addresses expanded from a stack tree at a time: 16 MB
# The reader unescapes the text of these `#` lines (heap_file's _ESCAPED); of them, `log`
# is the one it keeps in meta.
_ESCAPED_META = ("log",)
_ESCAPE_RE = re.compile("[\\\\\x00-\x1f\x7f]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_EXACT = float(2**53)  # below it, hundredths are exact integers in a float64
_COUNTERS = b"\n  t*: %d: %d [%d: %d]\n"
_ESTIMATE = b"# estimate: %d.%02d %d.%02d %d.%02d %d.%02d\n"


def format_jeprof(prof: HeapProfile) -> Iterator[bytes]:
    """`prof` as heap_v2 text, in pieces (see the module's docstring). A stack without
    frames, which heap_v2 cannot hold, is written as the sampler writes a stack of no
    readable frame: one unknown frame, 0x0."""
    counters = np.column_stack([prof.cur_objs, prof.cur_bytes, prof.acc_objs, prof.acc_bytes])
    if (counters < 0).any():
        raise ValueError("heap_v2 holds no negative counts (a difference of two profiles)")
    yield _encode("\n".join(_header(prof)) + "\n")
    yield from _stacks(prof, counters.reshape(-1, 4))
    yield _encode("\nMAPPED_LIBRARIES:\n" + "".join(map(_maps_line, prof.mappings)))


def _header(prof: HeapProfile) -> list[str]:
    """The first line and the `#` lines, each as heap_file reads it, then the totals: the
    lines a reader of the header alone (read_heap_header) finds before the first stack."""
    lines = [f"heap_v2/{prof.rate}"]
    if prof.version:
        lines.append(f"# mem_profiler {prof.version}")
    if prof.pid is not None:
        lines.append(f"# pid: {prof.pid}")
    lines += [
        f"# {key}: {_escape(value)}"
        for key, value in (("cmdline", prof.cmdline), ("exe", prof.exe))
        if value is not None
    ]
    lines.append(f"# heap: {prof.heap}")
    lines += [
        f"# {key}: {_escape(value) if key in _ESCAPED_META else _one_line(value)}"
        for key, value in prof.meta.items()
    ]
    if prof.dropped_samples or prof.version:  # the sampler writes it, 0 too
        lines.append(f"# dropped_samples: {prof.dropped_samples}")
    if prof.drops is not None:
        d = prof.drops
        lines.append(
            f"# dropped: stack_table={d.stack_table} live_table={d.live_table}"
            f" memory={d.memory} bytes={d.bytes}"
        )
    lines += [f"# build_id: {_escape(path)} {hexid}" for path, hexid in prof.build_ids.items()]
    lines += [
        f"# python_frame: 0x{address:x} {f.line} {f.first_line}"
        f" {_escape(f.name)}\t{_escape(f.file)}"
        for address, f in prof.python_frames.items()
    ]
    lines += [
        f"# failed_alloc: time_ns={f.time_ns} bytes={f.bytes} error={f.error} @{_frames(f.stack)}"
        for f in prof.failures
    ]
    lines += [
        f"# foreign: time_ns={f.time_ns} bytes={f.bytes} kind={f.kind}"
        f" address=0x{f.address:x} @{_frames(f.stack)}"
        for f in prof.foreign
    ]
    totals = (int(column.sum()) for column in (prof.cur_objs, prof.cur_bytes))
    accum = (int(column.sum()) for column in (prof.acc_objs, prof.acc_bytes))
    lines.append("  t*: {}: {} [{}: {}]".format(*totals, *accum))
    return lines


def _stacks(prof: HeapProfile, counters: np.ndarray) -> Iterator[bytes]:
    """The stacks' lines, a piece of about _PIECE_FRAMES addresses at a time, from
    stacks expanded a run of _RUN_FRAMES at a time where the file holds them as a tree."""
    tree = prof.stack_tree
    runs = (
        tree.runs(_RUN_FRAMES) if isinstance(tree, StackTree) else [(0, prof.addrs, prof.offsets)]
    )
    for first, addrs, offsets in runs:
        count = len(offsets) - 1
        start = 0
        while start < count:
            end = int(np.searchsorted(offsets, offsets[start] + _PIECE_FRAMES, side="right")) - 1
            end = min(max(end, start + 1), count)
            yield _piece(prof, counters, addrs, offsets[start : end + 1], first + start)
            start = end


def _piece(
    prof: HeapProfile, counters: np.ndarray, addrs: np.ndarray, offsets: np.ndarray, start: int
) -> bytes:
    """The lines of the stacks from `start` on whose frames are those of `addrs` that
    `offsets` bound: labels, addresses, counters, estimates."""
    end = start + len(offsets) - 1
    first = int(offsets[0])
    text, token_ends = _hex_tokens(addrs[first : int(offsets[-1])])
    bounds = np.r_[0, token_ends][offsets - first].tolist()
    rows = counters[start:end].tolist()
    estimates = (
        [b""] * len(rows) if prof.estimates is None else _estimates(prof.estimates[start:end])
    )
    labels = prof.labels
    out = []
    for i, (row, estimate) in enumerate(zip(rows, estimates, strict=True)):
        if labels and start + i in labels:
            out.append(_encode(f"# labels: {_one_line(labels[start + i])}\n"))
        frames = text[bounds[i] : bounds[i + 1]] or b" 0x0"
        out += (b"@", frames, _COUNTERS % tuple(row), estimate)
    return b"".join(out)


def _hex_tokens(addrs: np.ndarray) -> tuple[bytes, np.ndarray]:
    """' 0x<hex>' of each address (lower case, no leading zeros), all of them one after
    the other, and where each ends."""
    count = len(addrs)
    digits = np.frombuffer(binascii.hexlify(addrs.astype(">u8").tobytes()), np.uint8)
    digits = digits.reshape(count, 16)
    significant = digits != ord("0")
    significant[:, 15] = True  # 0 is 0x0
    first = significant.argmax(axis=1)  # leading zeros
    cells = np.empty((count, 19), np.uint8)
    cells[:, :3] = np.frombuffer(b" 0x", np.uint8)
    cells[:, 3:] = digits
    keep = np.ones((count, 19), bool)
    keep[:, 3:] = np.arange(16) >= first[:, None]
    return cells[keep].tobytes(), np.cumsum(19 - first)


def _estimates(est: np.ndarray) -> list[bytes]:
    """Each row's `# estimate:` line: two decimals, as the sampler writes them (which the
    reader parses in bulk), where those give back the very float; else Python's shortest
    text of it (an estimate of a profile made from an event log)."""
    hundredths = np.rint(est * 100)
    exact = ((hundredths / 100 == est) & (hundredths < _EXACT)).all(axis=1)
    whole, cents = np.divmod(np.where(exact[:, None], hundredths, 0).astype(np.int64), 100)
    pairs = np.stack([whole, cents], axis=2).reshape(len(est), 8).tolist()
    values = est.tolist()
    return [
        _ESTIMATE % tuple(pair) if ok else _encode("# estimate: " + " ".join(map(repr, row)) + "\n")
        for ok, pair, row in zip(exact.tolist(), pairs, values, strict=True)
    ]


def _maps_line(m: MemoryMapping) -> str:
    """A /proc/<pid>/maps line of the mapping (its device and inode, which the profile
    does not keep, as 00:00 0); a newline in its path as the kernel writes it, \\012."""
    path = f" {m.path}".replace("\n", "\\012") if m.path else ""
    return f"{m.start:08x}-{m.end:08x} {m.perms} {m.offset:08x} 00:00 0{path}\n"


def _frames(stack: tuple[int, ...]) -> str:
    return "".join(f" 0x{address:x}" for address in stack)


def _escape(text: str) -> str:
    """The sampler's escape of the text of its `#` lines: \\\\, \\n, \\r, \\t, and \\xHH
    for the other control bytes (heap_file's _unescape undoes it)."""
    return _ESCAPE_RE.sub(lambda m: _NAMED.get(m[0]) or f"\\x{ord(m[0]):02x}", text)


def _one_line(text: str) -> str:
    """Text the reader keeps as it is: on one line, or the file would not read."""
    if "\n" in text or "\r" in text:
        raise ValueError(f"a line break in {text!r}, which heap_v2 cannot hold there")
    return text


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def render(r: Rendering) -> Iterator[bytes]:
    """--jeprof: the raw profile (its stacks --focus and --ignore keep) as heap_v2."""
    return format_jeprof(r.profile)
