"""Reader of the legacy heap profiles that Go's pprof reads: gperftools' (`HEAPPROFILE`,
`GetHeapSample`, `GetHeapGrowthStacks`), jemalloc 3's, Google's `heapz` and `growthz`
and Go's (`pprof.Lookup("heap").WriteTo(w, 1)`).

    heap profile: <objects>: <bytes> [<objects>: <bytes>] @ <format>[/<N>]
    <objects>: <bytes> [<objects>: <bytes>] @ 0x<address> ...     (one line per stack)
    MAPPED_LIBRARIES:                                              (or --- Memory map: ---)
    <the process's /proc/<pid>/maps, or heapz's short lines: read/text.py>

The counts are those in use, then [those allocated]; the addresses are return
addresses, leaf first. `#` lines and blank lines are comments (Go's frame names, its
`# runtime.MemStats` trailer), `%warn` lines before the first line gperftools' notes.
The format says how the counts were sampled, so how they are unsampled (as
pprof's legacy_profile.go does): a sample of a stack of average size s stands for
1 / (1 - exp(-s/R)) allocations."""

from __future__ import annotations

import re

import numpy as np

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.read.text import U64_MAX, decode, read_legacy_mappings, show

# The formats, each with what divides its N into the sampling rate R: N is R (heap_v2:
# gperftools' GetHeapSample and jemalloc 3; heapz_v2), Go writes twice R (heap), or
# 0: N is not a rate, every allocation was recorded and the counts are whole
# (heapprofile: gperftools' HEAPPROFILE; growth, growthz: the heap's growth); and
# whether its counts can be those allocated as well as those in use (not growth's).
FORMATS = {
    "heap_v2": (1, True),
    "heapz_v2": (1, True),
    "heap": (2, True),
    "heapprofile": (0, True),
    "growth": (0, False),
    "growthz": (0, False),
}
PREFIX = b"heap profile:"
_WARNING = "%warn"  # gperftools' notes before the first line
_HEADER_RE = re.compile(
    r"heap profile: *(\d+): *(\d+) *\[ *(\d+): *(\d+) *\] *@ *([a-z_0-9]+)(?:/(\d+))?"
)
_SAMPLE_RE = re.compile(r"(\d+): *(\d+) *\[ *(\d+): *(\d+) *\] *@((?: +0x[0-9a-f]{1,16})*)")
_MAP_SENTINELS = ("MAPPED_LIBRARIES:", "--- Memory map: ---")
_COUNTER_DIGITS = 18  # below 2^63
_FORM = "'<objects>: <bytes> [<objects>: <bytes>] @ 0x<address> ...'"


def is_legacy(first_line: bytes) -> bool:
    """Whether a file whose first line this is is a legacy heap profile."""
    return first_line.startswith((PREFIX, _WARNING.encode()))


def parse_legacy(data: bytes, name: str) -> HeapProfile:
    """The profile of a legacy heap profile's text; HeapFileError names the line that is
    wrong."""
    lines = decode(data).replace("\r\n", "\n").replace("\r", "\n").split("\n")

    def fail(lineno: int, what: str) -> HeapFileError:
        return HeapFileError(f"{name}:{lineno}: {what}")

    at = _first_line(lines, name)
    prof, has_alloc = _header(lines[at], at + 1, name)
    counters: list[tuple[int, int, int, int]] = []
    values: dict[str, int] = {}  # hex token -> address; stacks share most of their frames
    addrs: list[int] = []
    lengths: list[int] = []
    maps_at = len(lines)
    for lineno, line in enumerate(lines[at + 1 :], at + 2):
        text = line.strip()
        if not text or text[0] == "#":
            continue
        if any(sentinel in text for sentinel in _MAP_SENTINELS):
            maps_at = lineno
            break
        m = _SAMPLE_RE.fullmatch(text)
        if m is None:
            raise fail(lineno, f"expected a stack's line {_FORM}, found {show(line)}")
        counts = m.group(1, 2, 3, 4)
        if max(map(len, counts)) > _COUNTER_DIGITS:
            raise fail(lineno, "a counter too large for 64 bits")
        objs, nbytes, acc_objs, acc_bytes = map(int, counts)
        if (objs == 0 < nbytes) or (acc_objs == 0 < acc_bytes):
            raise fail(lineno, f"bytes without objects in {show(line)}")
        counters.append(
            (objs, nbytes, acc_objs, acc_bytes) if has_alloc else (objs, nbytes, objs, nbytes)
        )
        tokens = m[5].split()
        for token in tokens:
            if token not in values:
                values[token] = int(token, 16)
        addrs.extend(map(values.__getitem__, tokens))
        lengths.append(len(tokens))
    read_legacy_mappings(prof, enumerate(lines[maps_at:], maps_at + 1), fail)

    table = np.array(counters, np.int64).reshape(-1, 4)
    prof.addrs = np.array(addrs, np.uint64)
    prof.offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=prof.offsets[1:])
    prof.cur_objs, prof.cur_bytes, prof.acc_objs, prof.acc_bytes = (
        np.ascontiguousarray(table[:, k]) for k in range(4)
    )
    return prof


def legacy_header(data: bytes, name: str) -> HeapProfile:
    """The profile of a legacy heap profile's first line alone (`data`: the file's
    start, with that line whole): no stacks."""
    lines = decode(data).split("\n")
    at = _first_line(lines, name)
    return _header(lines[at], at + 1, name)[0]


def _first_line(lines: list[str], name: str) -> int:
    """Where the `heap profile:` line is, after gperftools' `%warn` lines."""
    at = 0
    while at < len(lines) - 1 and lines[at].startswith(_WARNING):
        at += 1
    return at


def _header(line: str, lineno: int, name: str) -> tuple[HeapProfile, bool]:
    """The profile a `heap profile:` line starts, its sampling rate set to unsample its
    counts as its format says, and whether its counts include those allocated (as
    pprof decides it: totals allocated that are neither 0 nor those in use). Where they
    do not, its one kind of count stands for both."""
    m = _HEADER_RE.fullmatch(line.strip())
    if m is None:
        raise HeapFileError(
            f"{name}:{lineno}: expected 'heap profile: <objects>: <bytes> [<objects>:"
            f" <bytes>] @ <format>' (gperftools, jemalloc 3, Go), found {show(line)}"
        )
    kind, n = m[5], m[6]
    if kind not in FORMATS:
        raise HeapFileError(
            f"{name}:{lineno}: a heap profile of format {kind!r}, which mem_parser does not"
            f" read (it reads {', '.join(FORMATS)})"
        )
    divisor, allocated = FORMATS[kind]
    if divisor and n is None:
        raise HeapFileError(
            f"{name}:{lineno}: '@ {kind}' without its sampling rate: expected '@ {kind}/<N>'"
        )
    if divisor and (len(n) > 20 or int(n) > U64_MAX):
        raise HeapFileError(f"{name}:{lineno}: a sampling rate above 2^64-1 in {show(line)}")
    totals = [int(t) for t in m.group(1, 2, 3, 4)]
    has_alloc = allocated and any(
        alloc not in (0, live) for live, alloc in zip(totals[:2], totals[2:], strict=True)
    )
    return HeapProfile(path=name, rate=int(n) // divisor if divisor else 1), has_alloc
