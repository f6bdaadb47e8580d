"""The .heap reader, unsampling, aggregation and the text report, on hand-written input."""

from __future__ import annotations

import gzip
import math
import os
import re
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pytest
from support.synthetic_heaps import OURS, hand_symbolized

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.profile import Drops
from mem_profiler.parser.common.sampling import drop_note, sample_values, scale_factors, unsample
from mem_profiler.parser.model.aggregate import aggregate
from mem_profiler.parser.read import heap_file
from mem_profiler.parser.read.heap_file import parse_heap, read_heap, read_heap_header
from mem_profiler.parser.report.text import format_text
from mem_profiler.parser.symbols.allocator_frames import cut_allocator_frames
from mem_profiler.parser.symbols.symbolize import symbolize

T = TypeVar("T")

# What jemalloc itself writes: per-thread lines, no '#' lines.
JEMALLOC = """\
heap_v2/524288
  t*: 28106: 56637512 [0: 0]
  t0: 28106: 56637512 [0: 0]
@ 0x7f1 0x7f2
  t*: 13: 6688 [0: 0]
  t0: 13: 6688 [0: 0]
@ 0x7f3
  t*: 1: 2048 [0: 0]

MAPPED_LIBRARIES:
00400000-00401000 r-xp 00000000 08:01 1 /usr/bin/true
"""

# A legacy heap profile (gperftools, jemalloc 3, Go), of the format given.
LEGACY = """\
heap profile:    3:   12288 [    5:    20480] @ {format}
     2:     8192 [     3:    12288] @ 0x7f1 0x7f2
# a comment
     1:     4096 [     2:     8192] @ 0x7f3

MAPPED_LIBRARIES:
00400000-00401000 r-xp 00000000 08:01 1 /usr/bin/true
"""


def write(tmp_path, text: str, name: str = "x.heap") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_reads_every_field_of_our_format(tmp_path):
    prof = read_heap(write(tmp_path, OURS))
    assert (prof.rate, prof.version, prof.pid, prof.cmdline) == (1024, "0.1.0", 4242, "./leaky 200")
    assert (prof.exe, prof.heap, prof.dropped_samples) == ("/abs/path/to/leaky", "host", 3)
    assert prof.build_ids == {
        "/abs/path/to/leaky": "3f2a00",
        "/usr/lib/x86_64-linux-gnu/libc.so.6": "ab12",
    }
    assert prof.meta == {
        "window_start_ns": "1763750000000000000",
        "window_end_ns": "1763750001000000000",
        "unwinder": "libunwind",
        "max_depth": "64",
    }
    assert prof.stacks == [
        (0x55D0C0A01234, 0x55D0C0A01300, 0x7F12A0029D90),
        (0x55D0C0A01250, 0x55D0C0A01300),
    ]
    assert prof.cur_objs.tolist() == [100, 20] and prof.cur_bytes.tolist() == [409600, 81920]
    assert prof.acc_objs.tolist() == [100, 30] and prof.acc_bytes.tolist() == [409600, 122880]
    assert prof.cur_objs.dtype == np.int64
    assert prof.mappings[1] == MemoryMapping(
        0x55D0C0A01000, 0x55D0C0A02000, "r-xp", 0x1000, "/abs/path/to/leaky"
    )
    assert prof.mappings[2].path == "[vdso]" and prof.mappings[3].path == ""
    assert [m.executable for m in prof.mappings] == [False, True, True, False]


def test_the_header_is_read_to_the_first_stack_however_long(tmp_path):
    # A Python program's `# python_frame:` lines can take megabytes before the stacks;
    # the header reader once stopped at 1 MiB, inside a line, and called it broken.
    frames = "".join(
        f"# python_frame: 0x{0x5079000000000000 + i:x} {i} 1 f{i}\tapp.py\n" for i in range(60_000)
    )
    head, stacks = OURS.split("  t*: 120:", 1)
    path = write(tmp_path, head + frames + "  t*: 120:" + stacks)
    assert len(frames) > 3 << 20
    header = read_heap_header(path)
    assert header.exe == "/abs/path/to/leaky" and header.build_ids["/abs/path/to/leaky"] == "3f2a00"
    assert header.python_frames == read_heap(path).python_frames
    assert len(header.python_frames) == 60_000


def test_a_header_line_of_megabytes_is_read_whole(tmp_path):
    # one line over several of the reader's chunks, then the lines after it
    args = " ".join(f"arg{i}" for i in range(800_000))
    path = write(tmp_path, OURS.replace("# cmdline: ./leaky 200", f"# cmdline: ./leaky {args}"))
    assert len(args) > 5 << 20
    header = read_heap_header(path)
    assert header.cmdline == f"./leaky {args}"
    assert header.exe == "/abs/path/to/leaky" and header.build_ids["/abs/path/to/leaky"] == "3f2a00"


def large_text_file(tmp_path) -> str:
    """A file of the sampler's text format of before the tree (one line of addresses a
    stack): 20,000 stacks of 40 frames, over 10 MB."""
    frames = [0x7F0000000000 + (i * 0x9E3779B1) % (1 << 30) for i in range(5000)]
    lines = ["heap_v2/1024", "# exe: /bin/true"]
    for i in range(20_000):
        stack = [0x7F0000000000 + 16 * i] + [frames[(7 * i + 13 * k) % 5000] for k in range(39)]
        lines += [
            "@ " + " ".join(f"0x{a:x}" for a in stack),
            "  t*: 1: 100 [2: 200]",
            "# estimate: 3.5 350.5 7.0 700.0",
        ]
    path = write(tmp_path, "\n".join([*lines, "", "MAPPED_LIBRARIES:", ""]))
    assert os.path.getsize(path) > 10 << 20
    return path


def traced_peak(work: Callable[[], T]) -> tuple[T, int]:
    """What work() returns, and the most memory Python and numpy held while it ran."""
    tracemalloc.start()
    try:
        out = work()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_file_of_the_text_format_takes_a_few_times_its_size_to_read(tmp_path):
    """Its reader holds the file and its arrays, a few times the file's size at most,
    never a Python object per frame (issue 24: 18 times once)."""
    path = large_text_file(tmp_path)
    prof, peak = traced_peak(lambda: read_heap(path))
    assert len(prof.addrs) == 20_000 * 40
    assert peak <= 3 * os.path.getsize(path), peak / os.path.getsize(path)


def test_a_large_file_of_the_text_format_takes_a_few_times_its_size_to_report(tmp_path):
    """-t of it, read, symbolized and aggregated, in a few times the file's size: every
    temporary over the frames is a run of them or 32 bits a frame."""
    path = large_text_file(tmp_path)
    table, peak = traced_peak(lambda: format_text(aggregate(symbolize(read_heap(path), None))))
    assert "Total: " in table
    assert peak <= 3 * os.path.getsize(path), peak / os.path.getsize(path)


@pytest.mark.parametrize("thread_name", ["", " worker", " pool worker 7"])
def test_reads_a_jemalloc_dump(thread_name):
    # a thread's line may end with its name (prof_sys_thread_name, thread.prof.name)
    prof = parse_heap(
        JEMALLOC.replace(
            "  t0: 28106: 56637512 [0: 0]\n", f"  t0: 28106: 56637512 [0: 0]{thread_name}\n"
        )
    )
    assert prof.rate == 524288 and prof.exe is None and prof.version == ""
    assert prof.stacks == [(0x7F1, 0x7F2), (0x7F3,)]
    assert prof.cur_bytes.tolist() == [6688, 2048]


@pytest.mark.parametrize(
    "header, rate, allocated",
    [
        ("heapprofile", 1, True),
        ("heap_v2/512", 512, True),
        ("heapz_v2/512", 512, True),
        ("heap/1024", 512, True),  # Go writes twice the rate
        ("growth", 1, False),
        ("growthz", 1, False),
    ],
)
def test_reads_the_legacy_heap_formats(tmp_path, header, rate, allocated):
    path = write(tmp_path, LEGACY.format(format=header))
    prof = read_heap(path)
    assert prof.rate == rate and prof.stacks == [(0x7F1, 0x7F2), (0x7F3,)]
    assert prof.cur_bytes.tolist() == [8192, 4096] and prof.cur_objs.tolist() == [2, 1]
    assert prof.acc_bytes.tolist() == ([12288, 8192] if allocated else [8192, 4096])
    assert prof.mappings[0].path == "/usr/bin/true"
    assert read_heap_header(path).rate == rate


def test_a_legacy_file_without_allocated_counts_shows_those_in_use_for_both():
    # gperftools' heap sample writes the counts in use twice; pprof: no allocated counts
    text = LEGACY.format(format="heap_v2/1").replace("[    5:    20480]", "[    3:    12288]")
    prof = parse_heap(text.replace("[     3:    12288]", "[     0:        0]"))
    assert prof.acc_bytes.tolist() == prof.cur_bytes.tolist() == [8192, 4096]


def proto(*fields: tuple[int, bytes]) -> bytes:
    """A protobuf message of length-delimited fields (each shorter than 128 bytes)."""
    return b"".join(bytes([number << 3 | 2, len(value)]) + value for number, value in fields)


CPU_PROFILE = proto(
    (1, b"\x08\x01\x10\x02"), (6, b""), (6, b"samples"), (6, b"count"), (1, b"\x08\x03\x10\x04")
) + proto((6, b"cpu"), (6, b"nanoseconds"))


DAMAGED = bytes(
    b ^ 0xFF if i == 10 else b for i, b in enumerate(gzip.compress(CPU_PROFILE, mtime=0))
)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def message(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def number_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def heap_profile(location_lines: int, sample_locations: int, extra: bytes = b"") -> bytes:
    """A heap profile of one function, one location of `location_lines` lines (inlined
    calls) and one sample naming it `sample_locations` times, with `extra` after it."""
    strings = b"".join(message(6, t) for t in (b"", b"inuse_space", b"bytes", b"f"))
    lines = b"".join(
        message(4, number_field(1, 1) + number_field(2, n)) for n in range(location_lines)
    )
    return (
        message(1, number_field(1, 1) + number_field(2, 2))
        + strings
        + message(5, number_field(1, 1) + number_field(2, 3))
        + message(4, number_field(1, 1) + lines)
        + message(2, message(1, b"\x01" * sample_locations) + number_field(2, 100))
        + extra
    )


def test_a_pprof_sample_that_would_expand_past_any_stack_is_refused(tmp_path):
    """5 kB of gzip, one location of 3,000 lines named 30,000 times by one sample:
    90 million frames, refused at the 65,536 frames no stack holds."""
    path = tmp_path / "x.pb.gz"
    path.write_bytes(gzip.compress(heap_profile(3000, 30000)))
    with pytest.raises(HeapFileError) as err:
        read_heap(str(path))
    assert str(err.value) == (
        f"{path} is gzip-compressed but no pprof profile.proto that reads whole: a sample of"
        " more than 65,536 frames (its locations times their lines), more than any stack"
        " holds."
    )
    path.write_bytes(gzip.compress(heap_profile(3, 10)))  # the same, small: read
    assert read_heap(str(path)).offsets.tolist() == [0, 30]


def test_a_pprof_of_unknown_fields_is_skipped_then_refused(tmp_path, monkeypatch):
    """Fields the profile message does not define are skipped, as protobuf readers skip
    them, and not kept; past the most fields a profile holds (lowered here) it is refused."""
    from mem_profiler.parser.read import pprof

    path = tmp_path / "x.pb.gz"
    path.write_bytes(gzip.compress(heap_profile(1, 1, number_field(99, 7) * 100)))
    assert read_heap(str(path)).cur_bytes.tolist() == [100]
    monkeypatch.setattr(pprof, "_MAX_FIELDS", 50)
    with pytest.raises(HeapFileError) as err:
        read_heap(str(path))
    assert str(err.value).endswith("reads whole: more than 50 fields, more than a profile holds.")


@pytest.mark.parametrize(
    "content, what",
    [
        (
            gzip.compress(b"\x0a\x04\x08\x01\x10\x02"),
            "is gzip-compressed but no pprof profile.proto that reads whole: a string index (1)"
            " past its table.",
        ),
        (
            gzip.compress(b"\x0a\x7f\x08"),
            "is gzip-compressed but no pprof profile.proto that reads whole: a field runs past"
            " its message.",
        ),
        (
            gzip.compress(CPU_PROFILE),
            "is a pprof profile of samples (count), cpu (nanoseconds), not of a heap: mem_parser"
            " reads heap profiles (Go's heap, alloc or allocs profiles).",
        ),
        (
            gzip.compress(b"\x08" + b"\xff" * 9 + b"\x7f"),
            "is gzip-compressed but no pprof profile.proto that reads whole: a number past 64"
            " bits.",
        ),
        (gzip.compress(CPU_PROFILE)[:-12], ": its gzip stream ends early: the file is cut short."),
        (DAMAGED, ": its gzip stream is damaged (Error -3 while decompressing data"),
    ],
    ids=["string-index", "field-past-end", "cpu", "number-past-64-bits", "cut-short", "damaged"],
)
def test_a_pprof_file_that_is_no_heap_profile_is_refused(tmp_path, content, what):
    """pprof's profile.proto, gzip-compressed: one that is damaged, cut short, or of
    anything but a heap is refused in one sentence that says which."""
    path = tmp_path / "x.pb.gz"
    path.write_bytes(content)
    for read in (read_heap, read_heap_header):
        with pytest.raises(HeapFileError) as err:
            read(str(path))
        assert str(err.value).startswith(f"{path}") and what in str(err.value), err.value
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, lineno, what",
    [
        ("heap profile: 1\n", 1, "expected 'heap profile: <objects>: <bytes> [<objects>:"),
        ("%warn note\n%warn\n", 3, "expected 'heap profile: <objects>: <bytes> [<objects>:"),
        (LEGACY.format(format="heap_v3/1"), 1, "a heap profile of format 'heap_v3', which"),
        (LEGACY.format(format="heap_v2"), 1, "'@ heap_v2' without its sampling rate"),
        (LEGACY.format(format="heap/" + "9" * 21), 1, "a sampling rate above 2^64-1"),
        (
            LEGACY.format(format="heapprofile").replace("] @ 0x7f3", "] 0x7f3"),
            4,
            "expected a stack's line '<objects>: <bytes> [<objects>: <bytes>] @ 0x<address>",
        ),
        (
            LEGACY.format(format="heapprofile").replace("@ 0x7f3", "@ 0x7g3"),
            4,
            "expected a stack's line",
        ),
        (
            LEGACY.format(format="growth").replace("1:     4096", "0:     4096"),
            4,
            "bytes without objects in text of ",
        ),
        (
            LEGACY.format(format="growth").replace("1:     4096", "1:     " + "9" * 19),
            4,
            "a counter too large for 64 bits",
        ),
        # lines of a legacy map that are no mapping are skipped, as pprof skips them
        (
            LEGACY.format(format="growth") + "00002000-00001000: /bin/x\n",
            8,
            "a mapping whose addresses or offset are above 2^64-1 or whose end is below its",
        ),
        (
            LEGACY.format(format="growth") + "1000-" + "9" * 20 + " r-xp 0 00:00 0 /bin/x\n",
            8,
            "a mapping whose addresses or offset are above 2^64-1",
        ),
    ],
)
def test_bad_legacy_files_name_the_line(tmp_path, text, lineno, what):
    path = write(tmp_path, text)
    with pytest.raises(HeapFileError) as err:
        read_heap(path)
    assert str(err.value).startswith(f"{path}:{lineno}: {what}"), err.value
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, lineno, what",
    [
        ("", 1, "the file is empty"),
        ("heap_v3/1\n", 1, "expected a 'heap_v2/<rate>' header"),
        (OURS.split("\nMAPPED_LIBRARIES:")[0], 19, "the file is truncated: no 'MAPPED_LIBRARIES:'"),
        (
            OURS.replace("[30: 122880]", "[30 122880]"),
            18,
            "expected a counter line after the stack on line 17",
        ),
        (
            OURS.replace("  t*: 20: 81920 [30: 122880]\n", ""),
            18,
            "expected a counter line after the stack on line 17",
        ),
        ("heap_v2/1\n@ 0x1\n", 3, "expected a counter line after the stack on line 2"),
        (
            OURS.replace("@ 0x55d0c0a01250", "@ 0x55d0c0a0125g"),
            17,
            "a bad address in the stack (text of 14 characters)",
        ),
        (OURS.replace("@ 0x55d0c0a01250 0x55d0c0a01300", "@"), 17, "expected '@' followed by hex"),
        (OURS.replace("  t*: 120: 491520", "  t*: x120: 491520"), 14, "garbled counter line"),
        (JEMALLOC.replace("[0: 0]\n  t0", "[0: 0] main\n  t0", 1), 2, "garbled counter line"),
        (
            JEMALLOC.replace("  t*: 13: 6688 [0: 0]", "  t*: 13: 6688 [0: 0] x"),
            5,
            "expected a counter",
        ),
        (OURS.replace("# pid: 4242", "# pid: forty"), 3, "'pid' must be a number"),
        (OURS + "not a maps line\n", 25, "expected a /proc/<pid>/maps line"),
        (OURS.replace("\n\nMAPPED", "\nbogus\nMAPPED"), 19, "unexpected line text of 5 characters"),
    ],
)
def test_bad_files_name_the_line(tmp_path, text, lineno, what):
    path = write(tmp_path, text)
    with pytest.raises(HeapFileError) as err:
        read_heap(path)
    assert str(err.value).startswith(f"{path}:{lineno}: {what}")
    assert "\n" not in str(err.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(HeapFileError, match="does not exist"):
        read_heap(tmp_path / "nope.heap")
    with pytest.raises(HeapFileError, match="is a directory"):
        read_heap(tmp_path)


def test_unsampling_known_counts():
    # 10 samples of 256 B at rate 1024: each stands for 1/(1-exp(-256/1024)) allocations.
    est_objs, est_bytes = unsample(np.array([10]), np.array([2560]), 1024)
    assert est_bytes[0] == pytest.approx(2560 / (1 - math.exp(-0.25)), abs=1e-9)
    assert est_objs[0] == pytest.approx(10 / (1 - math.exp(-0.25)), abs=1e-9)
    # rate 1 records every allocation; no objects means nothing to scale.
    assert scale_factors(np.array([3, 0]), np.array([30, 0]), 1).tolist() == [1.0, 0.0]
    assert scale_factors(np.array([0, 2]), np.array([0, 0]), 1024).tolist() == [0.0, 1.0]
    # a 1 MiB allocation at 512 KiB is sampled with probability 1 - e^-2 = 0.865
    assert 1 / scale_factors(np.array([1]), np.array([1 << 20]), 512 << 10)[0] == pytest.approx(
        0.8647, abs=1e-4
    )


WITH_ESTIMATES = (
    OURS.replace(
        "# dropped_samples: 3\n",
        "# dropped_samples: 3\n# dropped: stack_table=1 live_table=2 memory=0 bytes=5000\n",
    )
    .replace(
        "  t*: 100: 409600 [100: 409600]\n",
        "  t*: 100: 409600 [100: 409600]\n# estimate: 100.50 409600.00 100.50 409600.00\n",
    )
    .replace(
        "  t*: 20: 81920 [30: 122880]\n",
        "  t*: 20: 81920 [30: 122880]\n# estimate: 45.25 90000.00 60.00 130000.75\n",
    )
)


@pytest.mark.parametrize("bulk", [True, False])
def test_estimates_replace_scaling_by_the_average_size(bulk):
    """The sums of the samples' weights, read in bulk or line by line (a blank line
    among the stacks sends the whole section through the line reader)."""
    second = "@ 0x55d0c0a01250"
    text = WITH_ESTIMATES if bulk else WITH_ESTIMATES.replace(second, "\n" + second)
    prof = parse_heap(text)
    assert prof.drops == Drops(stack_table=1, live_table=2, memory=0, bytes=5000)
    assert sample_values(prof, "inuse_objects").tolist() == [100.5, 45.25]
    assert sample_values(prof, "inuse_space").tolist() == [409600.0, 90000.0]
    assert sample_values(prof, "alloc_objects").tolist() == [100.5, 60.0]
    assert sample_values(prof, "alloc_space").tolist() == [409600.0, 130000.75]
    assert drop_note(prof) == (
        "Dropped 3 samples standing for about 4.9 kB allocated: 1 because the stack table was"
        " full (raise MEMPROF_STACK_MEMORY): missing from every figure; 2 because the live table"
        " was full (raise MEMPROF_MAX_LIVE): counted as allocated, missing from the in-use "
        "figures."
    )


def test_estimates_as_python_writes_floats_are_read_in_bulk():
    """--jeprof writes a tree's estimates as Python's shortest text of each float: the
    bulk reader takes them (the line reader took 24 s of the 29 s of reading a torch
    training loop's conversion), with the values the line reader gives."""
    values = ("45.25 90000.12345678901 60.0 1.5e-05", "0.0 0.0 2.7077676510481012 1e+16")
    text = WITH_ESTIMATES.replace("45.25 90000.00 60.00 130000.75", values[0]).replace(
        "100.50 409600.00 100.50 409600.00", values[1]
    )
    data = text.encode()
    first, maps_at = data.find(b"\n@") + 1, data.find(b"\nMAPPED_LIBRARIES:")
    bulk = heap_file._bulk_samples(data, first, maps_at)
    assert bulk is not None and bulk[3] is not None
    expected = [[float(v) for v in line.split()] for line in reversed(values)]
    assert bulk[3].tolist() == expected
    second = "@ 0x55d0c0a01250"  # a blank line before it: the line reader
    lines = parse_heap(text.replace(second, "\n" + second)).estimates
    assert lines is not None and lines.tolist() == expected
    # past a float's range: not in bulk, and the line reader names the line
    too_large = text.replace("1.5e-05", "1.5e+309").encode()
    assert heap_file._bulk_samples(too_large, first, maps_at) is None
    with pytest.raises(HeapFileError, match="<heap>:21: expected '# estimate: <objs>"):
        parse_heap(too_large)


@pytest.mark.parametrize(
    "line, what",
    [
        ("# estimate: 1 2 3", "expected '# estimate: <objs> <bytes> <objs> <bytes>'"),
        ("# estimate: 1 2 3 nan", "expected '# estimate: <objs> <bytes> <objs> <bytes>'"),
        ("# estimate: 1 2 3 -4", "expected '# estimate: <objs> <bytes> <objs> <bytes>'"),
    ],
)
def test_bad_estimate_lines_name_the_line(line, what):
    text = WITH_ESTIMATES.replace("# estimate: 45.25 90000.00 60.00 130000.75", line)
    with pytest.raises(HeapFileError, match=f"<heap>:21: {re.escape(what)}"):
        parse_heap(text)


def test_an_estimate_line_must_follow_a_counter_line():
    text = WITH_ESTIMATES.replace(
        "# dropped_samples: 3\n", "# dropped_samples: 3\n# estimate: 1 2 3 4\n"
    )
    with pytest.raises(HeapFileError, match="does not follow a stack's counter line"):
        parse_heap(text)


def test_sample_indexes_pick_counters():
    prof = parse_heap(OURS)
    scale = 1 / (1 - math.exp(-4096 / 1024))
    assert sample_values(prof, "inuse_space") == pytest.approx([409600 * scale, 81920 * scale])
    assert sample_values(prof, "inuse_objects") == pytest.approx([100 * scale, 20 * scale])
    assert sample_values(prof, "alloc_objects") == pytest.approx([100 * scale, 30 * scale])
    assert sample_values(prof, "alloc_space") == pytest.approx([409600 * scale, 122880 * scale])
    with pytest.raises(ValueError):
        sample_values(prof, "inuse_bytes")


MiB = 1 << 20


def test_flat_and_cum_count_recursion_once():
    sym = hand_symbolized(
        [["a", "b", "a", "main"], ["c", "a", "main"], ["b", "main"]],
        [1, 2, 3],
        [60 * MiB, 30 * MiB, 10 * MiB],
    )
    table = aggregate(sym)
    assert table.total == 100 * MiB
    got = {
        n: (f / MiB, c / MiB) for n, f, c in zip(table.names, table.flat, table.cum, strict=True)
    }
    assert got == {"a": (60, 90), "c": (30, 30), "b": (10, 70), "main": (0, 100)}
    assert table.names == ["a", "c", "b", "main"]
    objs = aggregate(sym, "inuse_objects")
    assert objs.total == 6 and objs.names[0] == "b" and objs.flat[0] == 3


def test_ties_sort_by_cum_then_name():
    sym = hand_symbolized([["z", "y"], ["x", "w"], ["v", "w"]], [1, 1, 1], [MiB, MiB, MiB])
    assert aggregate(sym).names == ["v", "x", "z", "w", "y"]


def test_text_report_is_jeprof_layout():
    sym = hand_symbolized(
        [["a", "b", "a", "main"], ["c", "a", "main"], ["b", "main"]],
        [1, 2, 3],
        [60 * MiB, 30 * MiB, 10 * MiB],
    )
    assert format_text(aggregate(sym)) == (
        "Total: 100.0 MB\n"
        "    60.0  60.0%  60.0%     90.0  90.0% a\n"
        "    30.0  30.0%  90.0%     30.0  30.0% c\n"
        "    10.0  10.0% 100.0%     70.0  70.0% b\n"
        "     0.0   0.0% 100.0%    100.0 100.0% main\n"
    )
    assert format_text(aggregate(sym, "alloc_objects"), nodecount=2) == (
        "Total: 6 objects\n"
        "       3  50.0%  50.0%        4  66.7% b\n"
        "       2  33.3%  83.3%        2  33.3% c\n"
    )


def test_empty_profile_reports_zero():
    sym = hand_symbolized([], [], [])
    assert format_text(aggregate(sym)) == "Total: 0.0 MB\n"


def test_the_cut_goes_to_the_last_allocator_frame_and_keeps_one():
    # stacks of 3, 2, 2 and 5 frames; the last one's allocator frames have another
    # between them, cut with them (as jeprof cuts)
    alloc = np.array([True, True, False, True, True, True, False, True, False, True, False, False])
    frames = np.arange(12)
    kept, offsets = cut_allocator_frames(frames, alloc, np.array([0, 3, 5, 7, 12]))
    assert kept.tolist() == [2, 4, 6, 10, 11] and offsets.tolist() == [0, 1, 2, 3, 5]
    # empty stacks among them, first and last too, stay empty
    kept, offsets = cut_allocator_frames(frames, alloc, np.array([0, 0, 3, 3, 5, 7, 12, 12]))
    assert kept.tolist() == [2, 4, 6, 10, 11] and offsets.tolist() == [0, 0, 1, 1, 2, 3, 5, 5]
