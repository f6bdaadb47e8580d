"""mem_parser --jeprof, jemalloc's heap_v2 text (parser/report/jeprof.py): read back, it
is the profile it was written from, every line the reader knows included; it streams."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.jeprof import assert_same_profile
from support.synthetic_heaps import OURS

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.read.heap_file import parse_heap, read_heap_header
from mem_profiler.parser.report.jeprof import format_jeprof

# A HAL heap of a Python program, as the sampler writes one, with a line of each kind
# the reader knows: escaped text (a tab, a line break, a backslash, a control byte and a
# byte that is not UTF-8), Python frames, failed and foreign allocations, labels.
DEVICE = (
    rb"""heap_v2/1
# mem_profiler 0.1.0
# pid: 77
# forked_from: 76
# cmdline: ./svc --name a\tb\\c\x01 """
    + b"\xff"
    + rb"""
# exe: /opt/my\nsvc/bin
# heap: hal
# window_start_ns: 1763750000000000000
# window_end_ns: 1763750001000000000
# unwinder: hybrid
# max_depth: 64
# dropped_samples: 5
# dropped: stack_table=1 live_table=2 memory=2 bytes=4096
# log: /tmp/l\x7fog
# live_bytes: 100
# peak_live_bytes: 200
# peak_time_ns: 1763750000500000000
# build_id: /opt/my\nsvc/bin abcdef01
# build_id: /lib/with space/libc.so.6 0123
# python: 3.11.7 0x7f0000001000
# python_frame: 0x5079000000000000 12 10 keep	app.py
# python_frame: 0x5079000000000001 -1 0 we\tird\\name	/srv/a\nb.py
# failed_allocs: 3
# failed_alloc: time_ns=5 bytes=1048576 error=2 @ 0x401000 0x401100
# failed_alloc: time_ns=6 bytes=4 error=-1 @
# foreign: time_ns=7 bytes=0 kind=ipc_open address=0x7f00 @ 0x401000
# foreign_unrecorded: 3
  t*: 3: 6144 [5: 7168]
# labels: device=0 memtype=DEV module=3
@ 0x401000 0x5079000000000000 0x7f0000001234 0x401100
  t*: 2: 2048 [3: 3072]
# estimate: 2.00 2048.00 3.00 3072.00
@ 0x0
  t*: 0: 0 [1: 0]
# estimate: 0.00 0.00 1.00 0.00
# labels: device=1 memtype=HOST module=0
@ 0x401100 0x5079000000000001
  t*: 1: 4096 [1: 4096]
# estimate: 1.00 4096.00 1.00 4096.00

MAPPED_LIBRARIES:
00400000-00402000 r-xp 00000000 fe:01 42 /opt/my\012svc/bin
00007f00-00008000 rw-p 00000000 00:00 0
7f0000000000-7f0000100000 r-xp 00000000 fe:01 7 /lib/with space/libc.so.6
"""
)

# jemalloc's own: no line of ours, and a counter line per thread.
JEMALLOC = """\
heap_v2/524288
  t*: 28106: 56637512 [0: 0]
  t0: 28106: 56637512 [0: 0]
@ 0x7f1f00001000 0x7f1f00002000
  t*: 13: 6688 [0: 0]
  t0: 13: 6688 [0: 0]

MAPPED_LIBRARIES:
7f1f00000000-7f1f00100000 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6
"""


def written(prof: HeapProfile) -> bytes:
    return b"".join(format_jeprof(prof))


@pytest.mark.parametrize("text", [OURS, DEVICE, JEMALLOC], ids=["ours", "device", "jemalloc"])
def test_the_text_reads_back_as_the_profile(text):
    prof = parse_heap(text)
    again = parse_heap(written(prof))
    assert_same_profile(again, prof)
    if text is DEVICE:  # the test holds a line of each kind
        assert prof.labels and prof.failures and prof.foreign and prof.python_frames
        assert prof.drops and prof.estimates is not None and prof.cmdline is not None
        assert "\udcff" in prof.cmdline


def test_jeprof_reads_its_lines_and_skips_ours():
    """jeprof's own grammar: `@` lines and `t*:` counters, which our `#` lines never
    match; each stack's addresses leaf first, as read."""
    prof = parse_heap(DEVICE)
    lines = written(prof).decode("utf-8", "surrogateescape").splitlines()
    assert lines[0] == "heap_v2/1"
    stacks = [line for line in lines if line.startswith("@")]
    assert stacks == [
        "@ 0x401000 0x5079000000000000 0x7f0000001234 0x401100",
        "@ 0x0",
        "@ 0x401100 0x5079000000000001",
    ]
    counters = [line for line in lines if line.lstrip().startswith("t*:")]
    assert counters == [
        "  t*: 3: 6144 [5: 7168]",  # the totals, before the first stack
        "  t*: 2: 2048 [3: 3072]",
        "  t*: 0: 0 [1: 0]",
        "  t*: 1: 4096 [1: 4096]",
    ]
    maps = lines[lines.index("MAPPED_LIBRARIES:") + 1 :]
    assert maps[0] == "00400000-00402000 r-xp 00000000 00:00 0 /opt/my\\012svc/bin"
    assert maps[1] == "00007f00-00008000 rw-p 00000000 00:00 0"


def test_the_header_is_what_read_heap_header_reads(tmp_path):
    prof = parse_heap(DEVICE)
    path = tmp_path / "h.heap"
    path.write_bytes(written(prof))
    header = read_heap_header(str(path))
    assert (header.exe, header.build_ids, header.python_frames) == (
        prof.exe,
        prof.build_ids,
        prof.python_frames,
    )


@pytest.mark.parametrize(
    "estimates",
    [
        [[1 / 3, 2 / 3, 1e-7, 2.5e20]],  # sums of weights, from an event log
        [[70368744177664.01, 0.0, 0.01, 9007199254740993.0]],  # where hundredths stop
    ],
)
def test_estimates_of_any_value_read_back_exactly(estimates):
    prof = dataclasses.replace(
        parse_heap(OURS), estimates=np.array(estimates * 2, np.float64).reshape(2, 4)
    )
    assert_same_profile(parse_heap(written(prof)), prof)


def test_estimates_are_written_as_the_sampler_writes_them():
    """Two decimals, which the reader parses in bulk."""
    prof = parse_heap(DEVICE)
    lines = [line for line in written(prof).splitlines() if line.startswith(b"# estimate:")]
    assert lines[0] == b"# estimate: 2.00 2048.00 3.00 3072.00"


def test_a_stack_without_frames_is_one_unknown_frame():
    """heap_v2 has no empty stack: the sampler's unknown frame, 0x0, as in its files."""
    prof = parse_heap(OURS)
    prof = dataclasses.replace(prof, offsets=np.array([0, 0, 5], np.int64))
    assert parse_heap(written(prof)).stacks[0] == (0,)


def test_negative_counts_are_refused():
    prof = parse_heap(OURS)
    prof = dataclasses.replace(prof, cur_objs=np.array([-1, 20], np.int64))
    with pytest.raises(ValueError, match="negative"):
        written(prof)


def test_a_large_profile_is_written_in_pieces():
    """400,000 stacks of 100 frames are too much text to hold whole: pieces of a few
    megabytes, together the profile."""
    stacks, depth = 12_000, 100
    rng = np.random.default_rng(7)
    addrs = rng.integers(0x7F0000000000, 0x7FFFFFFFFFFF, stacks * depth, dtype=np.uint64)
    addrs[::7] = rng.integers(1, 0xFFFF, len(addrs[::7]), dtype=np.uint64)  # of every width
    counts = rng.integers(0, 1000, (4, stacks), dtype=np.int64)
    prof = dataclasses.replace(
        parse_heap(OURS),
        addrs=addrs,
        offsets=np.arange(0, stacks * depth + 1, depth, dtype=np.int64),
        cur_objs=counts[0],
        cur_bytes=counts[1],
        acc_objs=counts[2],
        acc_bytes=counts[3],
        estimates=np.round(rng.random((stacks, 4)) * 1e6, 2),
    )
    pieces = list(format_jeprof(prof))
    assert len(pieces) > 4 and max(map(len, pieces)) < 8 << 20
    assert_same_profile(parse_heap(b"".join(pieces)), prof)
