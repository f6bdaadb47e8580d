"""jemalloc's heap_v2 text for jeprof, as `mem_parser --jeprof` writes it from a capture
(jeprof does not read the sampler's .heap files), the real jeprof run on it (and the
tables of its layout, which google-pprof and `mem_parser -t` print too), and two
profiles compared whole."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.read.heap_file import read_heap
from support.profiling import run_parser

_ARRAYS = ("addrs", "offsets", "cur_objs", "cur_bytes", "acc_objs", "acc_bytes")


def to_jeprof(heap: Path, out: Path) -> Path:
    """`mem_parser -f heap --jeprof out`, checked to read back as the same profile."""
    run_parser("-f", heap, "--jeprof", out)
    assert_same_profile(read_heap(out), read_heap(heap))
    return out


def jeprof_text(
    exe: str | Path, heap: Path, index: str = "inuse_space"
) -> tuple[float, list[tuple[str, float, float]]]:
    """`jeprof --text` of one sample index: its Total (MB) and its rows in its order,
    (function, flat MB, cum MB)."""
    return text_table(["jeprof", "--text", f"--{index}", str(exe), str(heap)])


def text_table(argv: list[str | Path]) -> tuple[float, list[tuple[str, float, float]]]:
    """The Total and the rows (function, flat, cum) of a table in jeprof's `--text`
    layout, which google-pprof and `mem_parser -t` print too, from the command argv."""
    out = subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    lines = out.splitlines()
    total = float(next(line for line in lines if line.startswith("Total:")).split()[1])
    rows = [line.split() for line in lines]
    return total, [
        (row[5], float(row[0]), float(row[3]))
        for row in rows
        if len(row) == 6 and row[1].endswith("%")
    ]


def assert_same_profile(got: HeapProfile, expected: HeapProfile) -> None:
    """Every field of the two profiles the same, but the path they were read from and
    what jeprof's text cannot hold: the stacks at the peak, those nothing pointed to, the
    sampled frees by lifetime and a device heap's live blocks."""
    for name in _ARRAYS:
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    if expected.estimates is None:
        assert got.estimates is None
    else:
        assert got.estimates is not None and np.array_equal(got.estimates, expected.estimates)
    others = [
        f.name
        for f in dataclasses.fields(HeapProfile)
        if f.compare
        and f.name
        not in (*_ARRAYS, "estimates", "path", "peak", "unreachable", "frees", "live_blocks")
    ]
    for name in others:
        assert getattr(got, name) == getattr(expected, name), name
