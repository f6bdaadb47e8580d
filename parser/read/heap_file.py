"""Strict reader of `.heap` files: which format a file is, and jemalloc's heap_v2 (with
our `# key: value` lines, read/header_lines.py, or without); our tree through
read/tree_file.py, and through read/legacy.py the `heap profile:` files of gperftools,
jemalloc 3 and Go."""

from __future__ import annotations

import binascii
import math
import os
import re
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.input_files import (
    open_regular,
    read_errors,
    read_regular,
)
from mem_profiler.core.profile import (
    HeapProfile,
)
from mem_profiler.parser.read.header_lines import header_line
from mem_profiler.parser.read.legacy import is_legacy, legacy_header, parse_legacy
from mem_profiler.parser.read.pprof import GZIP_MAGIC, read_pprof
from mem_profiler.parser.read.text import (
    MAPPED_LIBRARIES,
    U64_MAX,
    LineError,
    decode,
    read_mappings,
    show,
)
from mem_profiler.parser.read.tree_file import (
    TREE_OTHER,
    TREE_PREFIX_LEN,
    TREE_ZLIB,
    TREE_ZSTD,
    other_tree,
    parse_tree,
    refuse_a_cut_first_line,
    tree_head_bytes,
    tree_header,
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


# The sample section exactly as our sampler writes it, for the bulk parser.
_CANONICAL_COUNTERS_RE = re.compile(rb"(?:  t\*: \d{1,18}: \d{1,18} \[\d{1,18}: \d{1,18}\]\n)*")


_ESTIMATE = "# estimate:"


# as the sampler writes an estimate (two decimals), or Python's shortest text of a
# float (--jeprof's conversions of a tree's estimates); fromstring says if it is finite
_NUMBER = rb" \d{1,20}(?:\.\d{1,17})?(?:e[+-]\d{2,3})?"


_CANONICAL_ESTIMATES_RE = re.compile(rb"(?:# estimate:" + _NUMBER * 4 + rb"\n)*")


_LOWER_HEX = b"0123456789abcdef"


_RIGHT_ALIGNED = np.arange(16)[None, :] >= 16 - np.arange(17)[:, None]  # row k: last k True


_CHUNK = 1 << 20


# addresses, offsets, counters (stacks, 4) and estimates (stacks, 4) or None
_Samples = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]


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
        first = f.read(TREE_PREFIX_LEN)
        refuse_a_cut_first_line(first, path)
        if first in (TREE_ZSTD, TREE_ZLIB):
            return tree_header(tree_head_bytes(f, first, path), path, [], frames=False)[0]
        if first.startswith(TREE_OTHER):
            raise other_tree(first + f.readline(64), path)
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
    refuse_a_cut_first_line(data, name)
    if data[:TREE_PREFIX_LEN] in (TREE_ZSTD, TREE_ZLIB):
        return parse_tree(data, name)
    if data.startswith(TREE_OTHER):
        raise other_tree(data, name)
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
