"""The tree format of the .heap file and version 2 of the event log (docs/file-formats.md):
stacks written as a calling-context tree read back as the profile the same stacks give
as heap_v2 text, Python frames merged where the sampler put them, estimates left out where
the reader's fallback gives them, and damaged trees refused in one line."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from support.paths import MEM_PARSER
from support.processes import limited_run
from support.profiling import one_heap, profile_run, run_parser
from support.synthetic_heaps import Mapped
from support.synthetic_logs import event, header, node_record, tree_records, tree_stack_record
from support.tree_files import (
    GROUP_END,
    ZSTD_PREFIX,
    Lifetimes,
    TreeStack,
    compressed,
    decompressed,
    fallback_estimate,
    hal_text,
    heap_v2_text,
    merged,
    python_frame,
    tree_file,
    tree_payload,
)

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.profile import FRAME_END, HeapProfile
from mem_profiler.parser.log.analysis import open_window_log
from mem_profiler.parser.read import context_tree
from mem_profiler.parser.read import tree_file as tree_reader
from mem_profiler.parser.read.capture_files import heap_of
from mem_profiler.parser.read.event_log import ALLOC, read_log
from mem_profiler.parser.read.header_lines import parse_frame_line
from mem_profiler.parser.read.heap_file import parse_heap, read_heap, read_heap_header
from mem_profiler.parser.report import jeprof
from mem_profiler.parser.report.jeprof import format_jeprof
from mem_profiler.parser.symbols.symbolize import symbolize
from mem_profiler.parser.symbols.tree_sums import stacks_flat_cum

RATE = 4096
P = python_frame
# A native program: main and its start-up, leaf first, in /bin/true's mapping.
MAIN = [0x401230, 0x401890, 0x400F10]
EVAL = (0x402000, 0x402400)  # _PyEval_EvalFrameDefault's code: (start, end]
HEADER = [
    "# mem_profiler 0.2.0",
    "# pid: 4242",
    "# cmdline: ./app",
    "# exe: /bin/true",
    "# heap: host",
    "# window_start_ns: 1763750000000000000",
    "# window_end_ns: 1763750001000000000",
    "# max_depth: 128",
]
PYTHON_HEADER = [
    *HEADER,
    f"# python: 3.11.7 0x{EVAL[0]:x} 0x{EVAL[1]:x}",
    *(
        f"# python_frame: 0x{P(i):x} {10 * i} {10 * i - 2} func{i}\tapp{i % 2}.py"
        for i in range(1, 7)
    ),
]


def assert_same_profile(tree: HeapProfile, text: HeapProfile) -> None:
    """Every field alike but the path; the estimates to float64's precision (the text
    writes them in decimal)."""
    for f in dataclasses.fields(HeapProfile):
        ours, theirs = getattr(tree, f.name), getattr(text, f.name)
        if f.name == "path" or not f.compare:  # stack_tree: how the stacks are kept
            continue
        if f.name == "estimates":
            np.testing.assert_allclose(ours, theirs, rtol=1e-15, atol=0)
        elif isinstance(theirs, np.ndarray):
            assert ours.dtype == theirs.dtype, f.name
            np.testing.assert_array_equal(ours, theirs, err_msg=f.name)
        else:
            assert ours == theirs, f.name


def write_both(tmp_path: Path, stacks: list[TreeStack], header=HEADER, **kw) -> tuple[Path, Path]:
    """The stacks as a tree (t.heap) and as heap_v2 text (v2.heap)."""
    evaluation = kw.pop("evaluation", EVAL)
    tree, text = tmp_path / "t.heap", tmp_path / "v2.heap"
    tree.write_bytes(tree_file(RATE, header, stacks, **kw))
    text.write_text(heap_v2_text(RATE, header, stacks, evaluation, **kw))
    return tree, text


# Stacks that share their callers, of mixed sizes (estimates written) and of one size
# (left to the reader), Python groups among them, and one without counts.
MIXED = [
    TreeStack([0x401100, *MAIN], (3, 300, 5, 500), estimate=(60.5, 6000.25, 90.0, 9000.0)),
    TreeStack([0x401104, 0x401100, *MAIN], (1, 8192, 2, 16384)),
    TreeStack([0x401108, 0x401100, *MAIN], (0, 0, 7, 70)),
    TreeStack([0x401200, 0x402010, 0x401300, 0x402020, *MAIN], python=[[P(1), P(2)], [P(3)]]),
    TreeStack([0x401200, 0x402010, 0x401300, 0x402020, *MAIN], (0, 0, 0, 0)),
    TreeStack([0x401204, 0x402010, 0x401300, *MAIN], (2, 20, 2, 20), python=[[P(4)], [P(5)]]),
]


def test_a_tree_reads_as_the_heap_v2_text_of_its_stacks(tmp_path):
    tree, text = write_both(tmp_path, MIXED, PYTHON_HEADER)
    assert_same_profile(read_heap(tree), read_heap(text))
    prof = read_heap(tree)
    assert np.diff(prof.offsets).tolist() == [4, 5, 5, 10, 8]  # the stack without counts is out
    assert prof.stacks[3] == (0x401200, P(1), P(2), 0x402010, 0x401300, P(3), 0x402020, *MAIN)
    assert prof.stacks[4] == (0x401204, P(4), 0x402010, 0x401300, *MAIN, P(5))
    assert prof.estimates is not None
    assert prof.estimates[0].tolist() == [60.5, 6000.25, 90.0, 9000.0]


def test_reports_of_a_tree_are_those_of_its_heap_v2_text(tmp_path):
    tree, text = write_both(tmp_path, MIXED, PYTHON_HEADER)
    for args in (["-t"], ["--collapsed"], ["--collapsed", "--native"], ["-t", "--alloc_objects"]):
        ours, theirs = (run_parser("-p", "/bin/true", "-f", f, *args) for f in (tree, text))
        assert ours.stdout == theirs.stdout, args
        assert ours.stdout.count("\n") > 2


def test_with_lines_a_trees_stacks_merge_by_function_and_line(tmp_path):
    """--lines merges a tree's stacks too, those that are at the same lines: a stack
    apart from another only by the line of its innermost Python frame stays a stack of
    its own, and every report is that of the heap_v2 text, whose stacks no report merges."""
    header = [*PYTHON_HEADER, f"# python_frame: 0x{P(7):x} 99 8 func1\tapp1.py"]
    again = TreeStack(
        [0x401200, 0x402010, 0x401300, 0x402020, *MAIN],
        (4, 40, 4, 40),
        python=[[P(7), P(2)], [P(3)]],
    )
    tree, text = write_both(tmp_path, [*MIXED, again], header)
    profile = read_heap(tree)
    sym = symbolize(profile, None, lines=True, merge=True)
    assert sym.tree is not None and len(sym.offsets) - 1 == len(profile.offsets) - 1
    for args in (["-t", "--lines"], ["--collapsed", "--lines"], ["-t", "--lines", "--native"]):
        ours, theirs = (run_parser("-p", "/bin/true", "-f", f, *args) for f in (tree, text))
        assert ours.stdout == theirs.stdout, args
    lines = run_parser("-p", "/bin/true", "-f", tree, "--collapsed", "--lines").stdout
    assert "func1 (app1.py:10)" in lines and "func1 (app1.py:99)" in lines
    merged = symbolize(profile, None, merge=True)  # by function alone, the two are one
    assert len(merged.offsets) - 1 == len(profile.offsets) - 2


def test_a_tree_is_written_as_jeprof_text_a_run_of_stacks_at_a_time(tmp_path, monkeypatch):
    """--jeprof expands a tree's stacks a run at a time: the text is the whole profile's,
    and the conversion never holds the stacks' frames whole (2 million frames, 16 MB,
    of 5,000 stacks sharing 400 callers: a tree of a few thousand nodes)."""
    callers = [0x500000 + 16 * i for i in range(400)]
    stacks = [TreeStack([0x600000 + 4 * i, *callers], (1, 8 + i, 2, 16 + i)) for i in range(5000)]
    tree, _ = write_both(tmp_path, MIXED[3:4] + stacks + MIXED[:1], PYTHON_HEADER)
    whole = read_heap(tree)
    expected = b"".join(format_jeprof(whole))  # its frames expanded, then written
    monkeypatch.setattr(jeprof, "_RUN_FRAMES", 1 << 16)
    monkeypatch.setattr(jeprof, "_PIECE_FRAMES", 1 << 14)
    prof = read_heap(tree)
    assert isinstance(prof.stack_tree, context_tree.StackTree)
    tracemalloc.start()
    try:
        written = hashlib.sha256()
        for piece in format_jeprof(prof):
            written.update(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written.digest() == hashlib.sha256(expected).digest()
    frames = len(whole.addrs)
    assert frames > 2_000_000
    assert peak < frames * 8 / 4, peak


def sites_header(exe: Mapped, evaluation: tuple[int, int]) -> list[str]:
    """The header of a profile of the sites fixture run from Python frames."""
    return [
        *HEADER[:3],
        f"# exe: {exe.path}",
        f"# python: 3.11.2 0x{evaluation[0]:x} 0x{evaluation[1]:x}",
        f"# python_frame: 0x{P(1):x} 12 10 Store.add\t/app/store.py",
        f"# python_frame: 0x{P(2):x} 4 1 <module>\t/app/app.py",
        f"# python_frame: 0x{P(3):x} 3 1 <module>\t/app/app.py",
        exe.build_id(),
    ]


def test_reports_name_the_functions_of_a_tree(tmp_path, build_fixture):
    """With a program's symbols: sites' functions, called from Python frames."""
    binary = build_fixture("sites")
    exe = Mapped("/nonexistent/bin/sites", 0x555555554000, binary)
    libpython = Mapped("/nonexistent/lib/libpython3.11.so.1.0", 0x7FFFF7400000, size=0x400000)
    evaluation = (libpython.at(0x1B2340), libpython.at(0x1B8000))
    run = [libpython.at(0x1B5A1E), exe.frame("main"), exe.frame("_start")]
    stacks = [
        TreeStack(
            [exe.frame("site_small"), libpython.at(0x13F2C1), *run],
            (2048, 2048 * 256, 2048, 2048 * 256),
            python=[[P(1), P(3)]],
        ),
        TreeStack([exe.frame("site_pages"), *run], (12, 12 * 4096, 12, 12 * 4096), python=[[P(2)]]),
        TreeStack([exe.frame("site_transient"), exe.frame("main")], (0, 0, 8, 8 << 20)),
    ]
    head = sites_header(exe, evaluation)
    maps = [*exe.maps(), *libpython.maps()]
    tree, text = write_both(tmp_path, stacks, head, evaluation=evaluation, maps=maps)
    collapsed = {}
    for args in (["-t"], ["--collapsed"], ["--collapsed", "--native"], ["-t", "--lines"]):
        ours, theirs = (run_parser("-p", binary, "-f", f, *args) for f in (tree, text))
        assert ours.stdout == theirs.stdout, args
        collapsed[" ".join(args)] = ours.stdout
    # a stack with Python frames shows those alone; with every frame, the native ones too
    assert "<module> (app.py);Store.add (store.py) " in collapsed["--collapsed"]
    assert "site_small" not in collapsed["--collapsed"]
    assert ";Store.add (store.py);" in collapsed["--collapsed --native"]
    assert ";site_small " in collapsed["--collapsed --native"]


def test_a_recursion_500_deep_and_its_shared_callers(tmp_path):
    """500 frames of two functions calling each other: 500 nodes of 2 frames; a second
    stack leaves the recursion one level up and shares all the rest."""
    recursion = [0x401500 + 4 * (i % 2) for i in range(500)]
    stacks = [
        TreeStack([*recursion, *MAIN], (1, 100, 1, 100)),
        TreeStack([0x401600, *recursion[1:], *MAIN], (2, 200, 2, 200)),
    ]
    payload = tree_payload(RATE, HEADER, stacks)
    assert b"# tree: frames=6 nodes=504 stacks=2 estimates=0 labels=0\n" in payload
    tree, text = write_both(tmp_path, stacks)
    prof = read_heap(tree)
    assert_same_profile(prof, read_heap(text))
    assert prof.stacks == [(*recursion, *MAIN), (0x401600, *recursion[1:], *MAIN)]
    assert (
        run_parser("-p", "/bin/true", "-f", tree, "--collapsed").stdout
        == run_parser("-p", "/bin/true", "-f", text, "--collapsed").stdout
    )


def test_a_chain_deeper_than_any_stack_is_refused_before_it_is_expanded():
    """300 stacks under one chain 5,000 deep would expand to 1.5 million frames from a
    few kB: a chain deeper than the 4,096 frames no stack of the sampler's reaches is
    refused in one line."""
    chain = [0x401500 + 4 * (i % 2) for i in range(5000)]
    stacks = [TreeStack([0x402000 + 16 * k, *chain, *MAIN], (1, 100, 1, 100)) for k in range(300)]
    with pytest.raises(HeapFileError) as err:
        parse_heap(compressed(tree_payload(RATE, HEADER, stacks)), "x.heap")
    assert str(err.value) == (
        f"x.heap: a stack of {5000 + 1 + len(MAIN):,} frames, more than the 4,096 any tree"
        " of the sampler's holds (the file is damaged)"
    )


def test_stacks_share_their_prefixes(tmp_path):
    stacks = [
        TreeStack([0x401010, 0x401020, *MAIN]),
        TreeStack([0x401030, 0x401020, *MAIN]),
        TreeStack([0x401020, *MAIN]),  # an inner node as a leaf
        TreeStack(MAIN[1:]),
    ]
    assert b"frames=6 nodes=6 stacks=4" in tree_payload(RATE, HEADER, stacks)
    tree, text = write_both(tmp_path, stacks)
    assert read_heap(tree).stacks == [tuple(s.native) for s in stacks]
    assert_same_profile(read_heap(tree), read_heap(text))


# --- Python frames ------------------------------------------------------------------

A, B, C = 0x401A00, 0x401B00, 0x401C00  # native frames outside the evaluation loop
E1, E2, E3 = 0x402010, 0x402100, 0x402400  # inside it; E3 its last byte (a return address)


@pytest.mark.parametrize(
    "native, groups, expected",
    [
        # one group per evaluation frame, just leafward of it
        ([A, E1, B, E2, C], [[P(1), P(2)], [P(3)]], [A, P(1), P(2), E1, B, P(3), E2, C]),
        # an empty group (3.12's shim) takes an evaluation frame and adds nothing
        ([A, E1, B, E2, C], [[], [P(3)]], [A, E1, B, P(3), E2, C]),
        ([A, E1, B, E2, C, E3], [[P(1)], [], [P(2)]], [A, P(1), E1, B, E2, C, P(2), E3]),
        # groups beyond the last evaluation frame go at the root end, in order
        ([A, E1, B], [[P(1)], [P(2)], [], [P(3), P(4)]], [A, P(1), E1, B, P(2), P(3), P(4)]),
        ([A, B], [[P(1)], [P(2)]], [A, B, P(1), P(2)]),
        # an evaluation frame at the leaf, and the group at it
        ([E1, A], [[P(1)]], [P(1), E1, A]),
        # more evaluation frames than groups: the outer ones get none
        ([E1, A, E2, B, E3], [[P(1)]], [P(1), E1, A, E2, B, E3]),
        # no native frame: all groups at the root end
        ([], [[P(1)], [P(2)]], [P(1), P(2)]),
        # (start, end]: the loop's first byte is not in it, as a return address
        ([EVAL[0], A, E1], [[P(1)]], [EVAL[0], A, P(1), E1]),
        # no Python frames
        ([A, E1, B], [], [A, E1, B]),
    ],
)
def test_python_groups_go_where_the_sampler_put_them(native, groups, expected):
    stacks = [TreeStack(native, python=groups), TreeStack([C, *native], python=groups[:1])]
    prof = parse_heap(tree_file(RATE, PYTHON_HEADER, stacks), "t.heap")
    assert merged(stacks[0], EVAL) == expected  # the writer's merge, the reference
    assert prof.stacks[0] == tuple(expected or [])
    assert prof.stacks[1] == tuple(merged(stacks[1], EVAL))
    assert GROUP_END not in prof.addrs


def test_python_groups_go_at_the_root_end_where_the_loop_is_unknown():
    """A `# python:` line as heap_v2 files had it, with no end: no frame is known to be
    the evaluation loop's."""
    header = [
        f"# python: 3.11.7 0x{EVAL[0]:x}" if "python:" in line else line for line in PYTHON_HEADER
    ]
    stacks = [TreeStack([A, E1, B, E2], python=[[P(1)], [P(2)]])]
    prof = parse_heap(tree_file(RATE, header, stacks), "t.heap")
    assert prof.stacks == [(A, E1, B, E2, P(1), P(2))]
    assert prof.meta["python"] == f"3.11.7 0x{EVAL[0]:x}"


def random_python_stacks(seed: int, count: int) -> list[TreeStack]:
    """`count` stacks of up to 11 native frames, in and out of the evaluation loop, and
    up to 4 groups of up to 3 Python frames, each stack's counts its own."""
    rng = np.random.default_rng(seed)
    natives = [A, B, C, E1, E2, E3]
    stacks = []
    for i in range(count):
        native = [natives[k] for k in rng.integers(0, 6, rng.integers(0, 12))]
        groups = [
            [P(int(f)) for f in rng.integers(1, 7, rng.integers(0, 4))]
            for _ in range(rng.integers(0, 5))
        ]
        stacks.append(TreeStack(native, (1, i + 1, 1, i + 1), python=groups))
    return stacks


def test_python_groups_of_many_stacks_at_once():
    """Many stacks in one go, each merged as the writer merges it alone."""
    stacks = random_python_stacks(7, 3000)
    prof = parse_heap(tree_file(RATE, PYTHON_HEADER, stacks), "t.heap")
    expected = [tuple(merged(s, EVAL)) or (0,) for s in stacks]
    assert prof.stacks == expected
    assert np.diff(prof.offsets).sum() == sum(map(len, expected))


def test_stacks_folded_as_they_are_expanded():
    """With fold, a stack with Python frames goes without the evaluation loop's frames and
    without the native frames rootward of its outermost Python frame, as the Python view
    folds them; a stack without Python frames keeps all of its own."""
    stacks = random_python_stacks(11, 2000)
    prof = parse_heap(tree_file(RATE, PYTHON_HEADER, stacks), "t.heap")

    def folded(stack: TreeStack) -> tuple[int, ...]:
        whole = merged(stack, EVAL)
        python = [k for k, f in enumerate(whole) if f >= P(0)]
        if not python:
            return tuple(whole) or (0,)
        return tuple(f for f in whole[: python[-1] + 1] if not EVAL[0] < f <= EVAL[1])

    assert isinstance(prof.stack_tree, context_tree.StackTree)
    frames, offsets = prof.stack_tree.expand(fold=True)
    got = [tuple(frames[a:b].tolist()) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    assert got == [folded(s) for s in stacks]
    assert sum(map(len, got)) < np.diff(prof.offsets).sum()  # some were folded


def test_the_python_view_expands_a_python_stacks_python_frames_alone():
    """python_view: a stack with Python frames expands to those alone, in the order the
    writer's merge has them (symbolize names a Python program's stacks so unless
    --native); a stack without any, empty groups alone included, keeps all of its own."""
    stacks = random_python_stacks(13, 2000)
    prof = parse_heap(tree_file(RATE, PYTHON_HEADER, stacks), "t.heap")

    def python_view(stack: TreeStack) -> tuple[int, ...]:
        whole = merged(stack, EVAL)
        python = tuple(f for f in whole if f >= P(0))
        return python or tuple(whole) or (0,)

    assert isinstance(prof.stack_tree, context_tree.StackTree)
    frames, offsets = prof.stack_tree.python_view().expand()
    got = [tuple(frames[a:b].tolist()) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    assert got == [python_view(s) for s in stacks]
    assert any(s.python and not any(s.python) for s in stacks)  # empty groups only


# --- estimates, labels and noted events ------------------------------------------------


def test_the_fallback_is_the_estimate_of_stacks_of_one_size(tmp_path):
    """The sampler leaves out the estimates of stacks whose samples are all of one size:
    their sum of weights is what the reader computes, count / (1 - exp(-size/rate))."""
    sizes = [1, 64, 4096, 65536, 1 << 20]
    stacks = [
        TreeStack([0x401000 + 16 * i, *MAIN], (n, n * s, 2 * n, 2 * n * s))
        for i, (n, s) in enumerate(zip([1, 3, 10, 7, 2], sizes, strict=True))
    ]
    weights = [1 / -np.expm1(-s / RATE) for s in sizes]
    written = [
        dataclasses.replace(
            st, estimate=(st.counts[0] * w, st.counts[1] * w, st.counts[2] * w, st.counts[3] * w)
        )
        for st, w in zip(stacks, weights, strict=True)
    ]
    left_out = parse_heap(tree_file(RATE, HEADER, stacks), "a.heap")
    given = parse_heap(tree_file(RATE, HEADER, written), "b.heap")
    assert left_out.estimates is not None and given.estimates is not None
    np.testing.assert_allclose(left_out.estimates, given.estimates, rtol=1e-14)
    assert given.estimates[0].tolist() == [
        1 * weights[0],
        1 * weights[0],
        2 * weights[0],
        2 * weights[0],
    ]
    # 1 MiB at a rate of 4 KiB: sampled for sure, each sample one allocation
    assert left_out.estimates[4].tolist() == [2.0, 2 << 20, 4.0, 4 << 20]
    np.testing.assert_allclose(
        left_out.estimates, [fallback_estimate(s, RATE) for s in stacks], rtol=1e-14
    )


def test_the_hal_heap_labels_its_stacks(tmp_path):
    flags = [1 | 1 << 10 | 5 << 56, 3 | 0 << 10 | 7 << 56, 0x3FF | 3 << 10 | 255 << 56, 2 | 9 << 10]
    stacks = [TreeStack([0x401000 + 16 * i, *MAIN], label=f) for i, f in enumerate(flags)]
    header = [line.replace("heap: host", "heap: hal") for line in HEADER]
    tree, text = write_both(tmp_path, stacks, header, labels=True)
    prof = read_heap(tree)
    assert_same_profile(prof, read_heap(text))
    assert prof.labels == {
        0: "device=1 memtype=DEV module=5",
        1: "device=3 memtype=SVM module=7",
        2: "device=1023 memtype=DVPP module=255",
        3: "device=2 memtype=9 module=0",
    }
    assert [hal_text(f) for f in flags] == list(prof.labels.values())


def test_noted_events_name_their_stacks_by_id(tmp_path):
    """A failed allocation's stack has no counts of its own; a foreign range's stack was
    not recorded (-1); another names an id no row has."""
    stacks = [
        TreeStack([0x401010, *MAIN], (1, 64, 1, 64), stack_id=17),
        TreeStack([0x401020, 0x402010, *MAIN], (0, 0, 0, 0), python=[[P(1)]], stack_id=3),
    ]
    notes = [
        "# failed_allocs: 2",
        "# failed_alloc: time_ns=5 bytes=1073741824 error=2 stack=3",
        "# failed_alloc: time_ns=6 bytes=1024 error=2 stack=99",
        "# foreign: time_ns=7 bytes=4096 kind=ipc_open address=0x7f0000 stack=-1",
        "# foreign: time_ns=8 bytes=0 kind=host_register address=0x7f1000 stack=17",
    ]
    prof = parse_heap(tree_file(RATE, [*PYTHON_HEADER, *notes], stacks), "t.heap")
    assert [(f.time_ns, f.bytes, f.error, f.stack) for f in prof.failures] == [
        (5, 1 << 30, 2, (0x401020, P(1), 0x402010, *MAIN)),
        (6, 1024, 2, ()),
    ]
    assert [(f.kind, f.address, f.stack) for f in prof.foreign] == [
        ("ipc_open", 0x7F0000, ()),
        ("host_register", 0x7F1000, (0x401010, *MAIN)),
    ]
    assert prof.stacks == [(0x401010, *MAIN)]
    assert prof.meta["failed_allocs"] == "2"


def test_the_header_alone_is_read_from_a_tree(tmp_path):
    path = tmp_path / "x.0001.cuda.heap"
    header = [line.replace("heap: host", "heap: cuda") for line in HEADER]
    path.write_bytes(tree_file(RATE, [*header, "# build_id: /bin/true abcd"], MIXED))
    prof = read_heap_header(str(path))
    assert (prof.pid, prof.exe, prof.heap, prof.rate) == (4242, "/bin/true", "cuda", RATE)
    assert prof.build_ids == {"/bin/true": "abcd"} and not len(prof.addrs)
    assert heap_of(str(path)) == "cuda"


def test_python_frame_lines_of_any_form_read_as_each_alone(tmp_path):
    """Runs of `# python_frame:` lines as the sampler writes them, read in bulk, broken
    by lines of other forms: each frame as parse_frame_line reads its line alone, and a
    damaged line among them named by its own line number."""
    frames = [
        f"0x{P(1):x} 12 10 Store.add\t/app/store.py",
        f"0x{P(2):x} -1 0 we\\tird\\\\name\t/srv/a\\nb.py",  # escapes
        f"0x{P(3):x} 3 1 <module>\t/app/app.py",
        f"0x{P(4):x} 3 1 trailing\t/app/app.py \r",  # spaces the line's strip drops
        f"0x{P(5):x} 7 1 caf\u00e9\t/app/\u00fcber.py",
        f"0x{P(3):x} 9 1 again\t/app/app.py",  # the same address again: the last counts
        f"0x{P(6):x} 5 5  spaced\t/app/x.py\u00a0",
    ]
    lines = [f"# python_frame: {f}" for f in frames]
    lines.insert(4, "#   python_frame:   " + f"0x{P(7):x} 1 1 loose\t/app/y.py")
    path = tmp_path / "t.heap"
    path.write_bytes(tree_file(RATE, [*HEADER, *lines], MIXED))
    expected = {}
    for line in lines:
        address, frame = parse_frame_line(line.split(":", 1)[1].strip())
        expected[address] = frame
    assert read_heap(path).python_frames == expected
    assert expected[P(2)].name == "we\tird\\name" and expected[P(4)].file == "/app/app.py"

    damaged = [*lines[:3], f"# python_frame: 0x{FRAME_END:x} 1 1 beyond\t/app/z.py", *lines[3:]]
    path.write_bytes(tree_file(RATE, [*HEADER, *damaged], MIXED))
    with pytest.raises(HeapFileError, match=rf"^{path}:{len(HEADER) + 3 + 3}: expected"):
        read_heap(path)


# Sampled frees of three of MIXED's stacks: its stacks 1 and 5 are the profile's rows 1 and
# 4 (stack 4 counts nothing).
FREES = {
    5: Lifetimes((0, 1, 0, 0, 0, 0, 0, 0)),
    1: Lifetimes((1, 0, 0, 0, 0, 0, 0, 0), 1, 8192),
    2: Lifetimes((3, 0, 2, 0, 0, 0, 1, 1), 3, 2**40),
}


def test_a_windows_lifetimes_follow_its_stacks(tmp_path):
    """Each stack's sampled frees by lifetime and its temporary ones, on its row of the
    profile, where the tree has them; none where it has no `lifetimes=`."""
    path = tmp_path / "t.heap"
    path.write_bytes(compressed(tree_payload(RATE, HEADER, MIXED, lifetimes=FREES)))
    frees = read_heap(path).frees
    assert frees is not None
    row = {1: 1, 2: 2, 5: 4}
    expected = np.zeros((5, 8), np.int64)
    temporary = np.zeros((5, 2), np.int64)
    for stack, f in FREES.items():
        expected[row[stack]] = f.by_lifetime
        temporary[row[stack]] = (f.temporary, f.temporary_bytes)
    assert (frees.by_lifetime == expected).all() and (frees.temporary == temporary).all()
    path.write_bytes(compressed(PAYLOAD))
    assert read_heap(path).frees is None


def test_a_device_heaps_live_blocks_follow_its_stacks(tmp_path):
    """A device heap's live samples, each on its stack's row of the profile."""
    path = tmp_path / "t.heap"
    live = [(5, 0x7F0000200000, 4096), (1, 0x7F0000000000, 1 << 40), (5, 0x7F0000201000, 512)]
    path.write_bytes(compressed(tree_payload(RATE, HEADER, MIXED, blocks=live)))
    blocks = read_heap(path).live_blocks
    assert blocks is not None
    assert blocks.row.tolist() == [4, 1, 4]
    assert blocks.address.tolist() == [b[1] for b in live]
    assert blocks.size.tolist() == [b[2] for b in live]


# --- damaged trees ----------------------------------------------------------------------


def nodes_said(payload: bytes, change) -> bytes:
    """The payload with its `# tree:` line's counts changed by `change(dict)`."""
    start = payload.index(b"# tree: ")
    end = payload.index(b"\n", start)
    counts = dict(f.split("=") for f in payload[start + 8 : end].decode().split())
    change(counts)
    line = "# tree: " + " ".join(f"{k}={v}" for k, v in counts.items())
    return payload[:start] + line.encode() + payload[end:]


def patched(payload: bytes, array: str, index: int, value: int) -> bytes:
    """The payload with one u32 of an array (`up`, `node_frame`, `native`, `est_row`)
    set to `value`: its four bytes, one in each of the array's byte planes."""
    start = payload.index(b"\n", payload.index(b"# tree: ")) + 1
    counts = dict(
        f.split("=") for f in payload[payload.index(b"# tree: ") + 8 : start - 1].decode().split()
    )
    frames, nodes, stacks = int(counts["frames"]), int(counts["nodes"]), int(counts["stacks"])
    at, length = {
        "up": (8 * frames, nodes),
        "node_frame": (8 * frames + 4 * nodes, nodes),
        "native": (8 * frames + 8 * nodes + 4 * stacks, stacks),
        "est_row": (8 * frames + 8 * nodes + 12 * stacks + 32 * stacks, int(counts["estimates"])),
    }[array]
    out = bytearray(payload)
    for byte, v in enumerate(value.to_bytes(4, "little")):
        out[start + at + byte * length + index] = v
    return bytes(out)


PAYLOAD = tree_payload(RATE, HEADER, MIXED)
WHOLE = compressed(PAYLOAD)  # as the sampler writes it
OLD = compressed(PAYLOAD, old=True)  # as earlier versions wrote it


@pytest.mark.parametrize(
    "content, message",
    [
        (
            WHOLE[: len(WHOLE) // 2],
            f"{{path}}: the file is cut short at byte {len(WHOLE) // 2:,}, inside its"
            " compressed tree: it is truncated",
        ),
        (
            WHOLE[:40] + bytes(40) + WHOLE[80:],
            "{path}: the compressed tree is damaged (zstd decompressor error:",
        ),
        (
            b"memprof_tree/2\nnot zstd at all",
            "{path}: the compressed tree is damaged (zstd decompressor error: Unknown frame"
            " descriptor): this is not a whole .heap file",
        ),
        (
            WHOLE + b"more",
            "{path}: 4 bytes follow the compressed tree: this is not a whole .heap file",
        ),
        (
            OLD[: len(OLD) // 2],
            f"{{path}}: the file is cut short at byte {len(OLD) // 2:,}, inside its"
            " compressed tree: it is truncated",
        ),
        (
            OLD[:35] + bytes(40) + OLD[75:],
            "{path}: the compressed tree is damaged (Error -3 while decompressing data:",
        ),
        (
            b"memprof_tree/1\nnot zlib at all",
            "{path}: the compressed tree is damaged (Error -3 while decompressing data:"
            " incorrect header check): this is not a whole .heap file",
        ),
        (
            OLD + b"more",
            "{path}: 4 bytes follow the compressed tree: this is not a whole .heap file",
        ),
        (
            b"memprof_tree/3\n" + WHOLE[15:],
            "{path}:1: a .heap file of format memprof_tree/3; this mem_parser reads"
            " memprof_tree/1 and /2 and heap_v2: use the mem_parser of the mem_profiler that"
            " wrote it",
        ),
        (
            compressed(nodes_said(PAYLOAD, lambda c: c.update(nodes="100"))),
            "{path}: the tree's arrays are cut short: its '# tree:' line says",
        ),
        (
            compressed(nodes_said(PAYLOAD, lambda c: c.update(stacks="5"))),
            "{path}: expected 'MAPPED_LIBRARIES:' right after the tree's arrays, found",
        ),
        (
            compressed(patched(PAYLOAD, "up", 4, 0)),
            "{path}: node 5 of the tree has the parent 5: a node's parent comes before it"
            " (the file is damaged)",
        ),
        (
            compressed(patched(PAYLOAD, "up", 2, 2**32 - 1)),
            "{path}: node 3 of the tree has the parent -4294967292: a node's parent comes"
            " before it (the file is damaged)",
        ),
        (
            compressed(patched(PAYLOAD, "node_frame", 1, 17)),
            "{path}: node 2 of the tree names frame 17 of 17 (the file is damaged)",
        ),
        (
            compressed(patched(PAYLOAD, "native", 2, 1000)),
            "{path}: stack 2 names the native leaf node 1000 of a tree of 21 nodes (the file"
            " is damaged)",
        ),
        (
            compressed(patched(PAYLOAD, "est_row", 0, 6)),
            "{path}: an estimate names stack 6 of 6 (the file is damaged)",
        ),
        (
            compressed(PAYLOAD.replace(b"# tree: ", b"# tree:x ")),
            "{path}:11: expected '# tree: frames=F nodes=N stacks=S estimates=E labels=0|1"
            " [peaks=P] [unreachable=U] [lifetimes=L] [blocks=B]'",
        ),
        (
            compressed(tree_payload(RATE, HEADER, MIXED, blocks=[(4, 0x1000, 8)])),
            "{path}: a stack of the block figures that the tree does not count (the file is"
            " damaged)",
        ),
        (
            compressed(tree_payload(RATE, HEADER, MIXED, lifetimes={4: FREES[1]})),
            "{path}: a stack of the lifetimes figures that the tree does not count (the file"
            " is damaged)",
        ),
        (
            compressed(
                tree_payload(RATE, HEADER, MIXED, lifetimes={1: Lifetimes((0,) * 8, 1, 2**63)})
            ),
            "{path}: a temporary allocations' size out of range (the file is damaged)",
        ),
        (
            compressed(PAYLOAD[: PAYLOAD.index(b"# tree:")]),
            "{path}:11: no '# tree:' line after the '#' lines: the file is truncated",
        ),
        (
            compressed(PAYLOAD.replace(b"heap_tree/", b"heap_v2/")),
            "{path}:2: expected a 'heap_tree/<rate>' line (rate below 2^64), found text of 12"
            " characters",
        ),
        (
            compressed(PAYLOAD.replace(b"# max_depth: 128", b"# failed_alloc: bytes=1")),
            "{path}:10: expected '# failed_alloc: time_ns=T bytes=N error=E stack=<id>'",
        ),
        (
            compressed(PAYLOAD.replace(b"r-xp 0000", b"r-xp zzzz")),
            "{path}:",  # the line of the memory map, as if decompressed in place
        ),
    ],
    ids=[
        "truncated",
        "garbled",
        "not zstd",
        "trailing data",
        "zlib: truncated",
        "zlib: garbled",
        "zlib: not zlib",
        "zlib: trailing data",
        "another version",
        "fewer nodes than said",
        "fewer stacks than said",
        "parent is the node",
        "parent before the root",
        "frame out of range",
        "leaf out of range",
        "estimate of no stack",
        "tree line",
        "live block of no stack",
        "lifetimes of no stack",
        "temporary bytes past int64",
        "no tree line",
        "heap_v2 inside",
        "note line",
        "memory map",
    ],
)
def test_a_damaged_tree_is_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "x.heap"
    path.write_bytes(content)
    expected = message.format(path=path)
    with pytest.raises(HeapFileError) as err:
        read_heap(path)
    assert str(err.value).startswith(expected), err.value
    done = limited_run(MEM_PARSER, "-p", "/bin/true", "-f", path, "-t", timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"mem_parser: {expected}"), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("cut", range(20))
def test_a_file_cut_anywhere_says_it_is_cut_short_and_where(tmp_path, cut):
    """A tree cut at 20 points, the first inside its first line: mem_parser says where."""
    at = 7 if cut == 0 else len(WHOLE) * cut // 20
    path = tmp_path / "cut.heap"
    path.write_bytes(WHOLE[:at])
    where = "first line" if at < len(b"memprof_tree/2\n") else "compressed tree"
    expected = f"{path}: the file is cut short at byte {at:,}, inside its {where}: it is truncated"
    with pytest.raises(HeapFileError, match=f"^{re.escape(expected)}"):
        read_heap(path)
    done = limited_run(MEM_PARSER, "-p", "/bin/true", "-f", path, "-t", timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"mem_parser: {expected}"), done.stderr


def test_damage_anywhere_is_a_profile_or_one_line():
    """Bytes changed, inserted, removed or cut off in the payload of a tree with every
    kind of array and line, and bits flipped in the compressed file: the reader gives a
    profile or a HeapFileError of one line, nothing else."""
    rng = np.random.default_rng(11)
    notes = ["# failed_alloc: time_ns=5 bytes=1 error=2 stack=3"]
    whole = tree_payload(RATE, [*PYTHON_HEADER, *notes], MIXED, labels=True)
    outcomes = {"profile": 0, "error": 0}
    for _ in range(2000):
        payload = bytearray(whole)
        at = int(rng.integers(0, len(payload)))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            payload[at] = int(rng.integers(0, 256))
        elif kind == 1:
            del payload[at:]
        elif kind == 2:
            payload[at:at] = rng.bytes(int(rng.integers(1, 9)))
        else:
            del payload[at : at + int(rng.integers(1, 9))]
        data = bytearray(compressed(bytes(payload)))
        if rng.random() < 0.1:
            data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        try:
            parse_heap(bytes(data), "x.heap")
            outcomes["profile"] += 1
        except HeapFileError as e:
            assert "\n" not in str(e) and str(e).startswith("x.heap:"), str(e)
            outcomes["error"] += 1
    assert min(outcomes.values()) > 100, outcomes


def refused(data: bytes, limit: int, arrays: int) -> str:
    stream = len(data) - len(data.partition(b"\n")[0]) - 1
    with pytest.raises(HeapFileError) as err:
        parse_heap(data, "x.heap")
    assert str(err.value) == (
        f"x.heap: the compressed tree expands past {limit:,} bytes, more than the {arrays:,}"
        f" bytes of arrays its '# tree:' line counts and 256 times its own {stream:,} for the"
        " rest: not a tree the sampler wrote (a damaged or hostile file)"
    )
    return str(err.value)


def arrays_size(payload: bytes) -> int:
    """The bytes of arrays a tree's `# tree:` line counts: what follows the line, less the
    mapped libraries' text after them."""
    start = payload.index(b"\n", payload.index(b"\n# tree: ") + 1) + 1
    return payload.index(b"\nMAPPED_LIBRARIES:", start) - start


@pytest.mark.parametrize("old", [False, True], ids=["zstd", "zlib"])
def test_a_tree_that_decompresses_past_the_limit_is_refused_early(monkeypatch, old):
    """A stream whose text would pass the reader's limit is refused in one line."""
    payload = PAYLOAD + b"x" * (8 << 20)  # 8 MiB more, in a few kB compressed
    limit = len(PAYLOAD) + (1 << 20)
    monkeypatch.setattr(tree_reader, "MAX_PROFILE_BYTES", limit)
    refused(compressed(payload, old), limit, arrays_size(PAYLOAD))


def test_a_decompression_bomb_is_refused_at_256_times_its_size(monkeypatch):
    """A small stream whose text expands past its arrays and 256 times itself (text
    compresses about ten times) is refused before it is all decompressed: its floor,
    64 MiB, lowered here so that the test needs no such memory."""
    data = compressed(PAYLOAD + b"x" * (8 << 20))  # zstd: 8 MiB in a few kB
    stream = len(data) - len(data.partition(b"\n")[0]) - 1
    monkeypatch.setattr(tree_reader, "_EXPANSION_FLOOR", 1 << 20)
    arrays = arrays_size(PAYLOAD)
    refused(data, arrays + max(1 << 20, 256 * stream), arrays)


def test_a_tree_whose_arrays_compress_far_is_read(build_fixture, tmp_path, monkeypatch):
    """65,536 stacks of their own, each holding one block of 64 B at -c 1: the sampler's
    tree compresses about 190 times (2^21 such stacks, freed, compress 540 times). Its
    arrays are bounded by what its `# tree:` line counts, not by the text's ratio:
    lowered here to 64 times, the floor to 1 MiB, so that a few MiB show it."""
    blocks = 65536
    proc, files = profile_run([build_fixture("distinct_stacks"), blocks], tmp_path / "d_", 1)
    data = one_heap(proc, files).read_bytes()
    monkeypatch.setattr(tree_reader, "_EXPANSION", 64)
    monkeypatch.setattr(tree_reader, "_EXPANSION_FLOOR", 1 << 20)
    assert len(decompressed(data)) > 64 * len(data) > 1 << 20
    prof = parse_heap(data, "x.heap")
    assert len(prof.offsets) - 1 == blocks
    assert (prof.cur_objs == 1).all() and (prof.acc_objs == 1).all()
    assert (prof.cur_bytes == 64).all() and (prof.acc_bytes == 64).all()


def test_an_earlier_versions_tree_reads_as_the_same_tree_of_today(tmp_path):
    """Earlier versions wrote the stream with zlib (memprof_tree/1), the sampler now with
    zstd (memprof_tree/2): the same tree reads to the same profile and report."""
    old, new = parse_heap(OLD, "old.heap"), parse_heap(WHOLE, "new.heap")
    assert old.stacks == new.stacks and old.rate == new.rate
    assert old.meta == new.meta
    reports = []
    for name, data in (("old.heap", OLD), ("new.heap", WHOLE)):
        (tmp_path / name).write_bytes(data)
        reports.append(run_parser("-p", "/bin/true", "-f", tmp_path / name, "--collapsed").stdout)
    assert reports[0] == reports[1] and reports[0]


def test_the_tree_line_may_be_spaced():
    payload = PAYLOAD.replace(b"# tree: frames", b"# tree:  frames")
    assert parse_heap(compressed(payload), "x.heap").stacks == parse_heap(WHOLE, "x.heap").stacks


def test_the_line_of_a_bad_mapping_is_counted_as_if_decompressed(tmp_path):
    payload = PAYLOAD.replace(b"r-xp 0000", b"r-xp zzzz")
    with pytest.raises(HeapFileError) as err:
        parse_heap(compressed(payload), "x.heap")
    lineno = (ZSTD_PREFIX + payload).split(b"\n").index(b"MAPPED_LIBRARIES:") + 2
    assert str(err.value).startswith(f"x.heap:{lineno}: expected a /proc/<pid>/maps line")


def test_stacks_expanded_in_many_chunks_are_those_of_one(monkeypatch):
    """Stacks of many depths, with Python frames, read in runs of about 1,000 frames: runs
    end inside one stack's frames, every other way, and one stack is wider than a run."""
    rng = np.random.default_rng(3)
    pool = [A, B, C, E1, E2, E3, *(0x401000 + 16 * i for i in range(50))]
    roots = [[int(rng.choice(pool)) for _ in range(60)]]
    for _ in range(3000):
        base = roots[int(rng.integers(0, len(roots)))]
        cut = int(rng.integers(0, len(base) + 1))
        roots.append(base[:cut] + [int(f) for f in rng.choice(pool, rng.integers(1, 5))])
    roots.insert(1500, [int(f) for f in rng.choice(pool, 2500)])  # wider than a run
    stacks = [
        TreeStack(r[::-1], python=[[P(int(f))] for f in rng.integers(1, 7, rng.integers(0, 4))])
        for r in roots
    ]
    data = tree_file(RATE, PYTHON_HEADER, stacks)
    whole = parse_heap(data, "t.heap")
    monkeypatch.setattr(context_tree, "_CHUNK_FRAMES", 997)
    chunked = parse_heap(data, "t.heap")
    assert_same_profile(chunked, whole)
    assert whole.stacks == [tuple(merged(s, EVAL)) for s in stacks]
    assert max(np.diff(whole.offsets)) > 997 * 2


# --- event logs of version 2 --------------------------------------------------------------


def test_a_version_2_log_reads_its_stacks_from_the_tree(tmp_path):
    chains = {
        5: ([0x401010, *MAIN], []),
        6: ([0x401020, 0x401010, *MAIN], []),
        9: ([A, E1, B, E2, C], [P(1), GROUP_END, P(2), P(3), GROUP_END]),
    }
    Path(f"{tmp_path / 'x_1.0001'}.1.memlog").write_bytes(
        header(version=2)
        + tree_records(chains)
        + event(ALLOC, 1000, 64, 0x10, 5)
        + event(ALLOC, 2000, 64, 0x20, 9)
    )
    known = read_log(str(tmp_path / "x_1.0001"), EVAL)
    assert known.warnings == []
    assert {k: s.frames.tolist() for k, s in known.stacks.items()} == {
        5: [0x401010, *MAIN],
        6: [0x401020, 0x401010, *MAIN],
        9: [A, P(1), E1, B, P(2), P(3), E2, C],
    }
    assert known.stacks[9].frames.dtype == np.uint64
    unknown = read_log(str(tmp_path / "x_1.0001"))
    assert unknown.stacks[9].frames.tolist() == [A, E1, B, E2, C, P(1), P(2), P(3)]


def test_a_version_2_log_takes_the_loop_from_its_heap_file(tmp_path):
    """mem_parser --peak of a log whose .heap is a tree: Python frames in place."""
    base = tmp_path / "x_1.0001"
    heap = tmp_path / "x_1.0001.heap"
    heap.write_bytes(tree_file(1, [*PYTHON_HEADER, f"# log: {base}"], [TreeStack(MAIN)]))
    Path(f"{base}.1.memlog").write_bytes(
        header(version=2)
        + tree_records({4: ([A, E1, B], [P(1), GROUP_END])})
        + event(ALLOC, 1000, 64, 0x10, 4)
    )
    cap = open_window_log(heap)
    assert cap.log.stacks[4].frames.tolist() == [A, P(1), E1, B]
    done = run_parser("-p", "/bin/true", "-f", heap, "--peak", "--collapsed", "--native")
    assert done.stdout == "true+0x1aff;true+0x200f;func1 (app1.py);true+0x1a00 64\n"


def test_a_version_2_log_with_nodes_missing_or_damaged_warns(tmp_path):
    Path(f"{tmp_path / 'x_1.0001'}.1.memlog").write_bytes(
        header(version=2)
        + node_record(1, 0, MAIN[-1])
        + node_record(2, 1, MAIN[-2])
        + node_record(4, 3, 0x401010)  # its parent 3 is in no file
        + node_record(7, 7, 0x401020)  # its own parent: damage
        + tree_stack_record(1, 2)
        + tree_stack_record(2, 4)
        + tree_stack_record(3, 7)
        + tree_stack_record(4, 12)
        + event(ALLOC, 1000, 64, 0x10, 1)
    )
    log = read_log(str(tmp_path / "x_1.0001"))
    assert {k: s.frames.tolist() for k, s in log.stacks.items()} == {
        1: MAIN[-2:],
        2: [0x401010],
        3: [],
        4: [],
    }
    assert log.warnings == [
        f"1 tree node records of {tmp_path / 'x_1.0001'} have a node or parent out of range"
        " (the log is damaged): they are left out.",
        f"3 stacks of {tmp_path / 'x_1.0001'} name nodes of the calling-context tree that no"
        " file read holds (the log is damaged): their frames stop there.",
    ]


def test_a_tree_stack_label_past_int64_is_read(tmp_path):
    """A stack record's label is a u64 (the fuzz run found one past 2^63 ended the
    reader in a traceback): read as it is."""
    Path(f"{tmp_path / 'x_1.0001'}.1.memlog").write_bytes(
        header(version=2)
        + node_record(1, 0, MAIN[-1])
        + tree_stack_record(1, 1, label=2**64 - 1)
        + event(ALLOC, 1000, 64, 0x10, 1)
    )
    log = read_log(str(tmp_path / "x_1.0001"))
    assert (log.stacks[1].label, log.stacks[1].frames.tolist()) == (2**64 - 1, MAIN[-1:])


def test_a_version_2_log_of_rotated_files_shares_nodes_across_them(tmp_path):
    """Each file holds the nodes its records use: a node written again is the same."""
    base = tmp_path / "r_1.0001"
    nodes: dict[tuple[int, int], int] = {}  # the sampler's, one numbering for the window
    for k in (1, 2, 3):
        Path(f"{base}.{k}.memlog").write_bytes(
            header(k, version=2)
            + tree_records({k: ([0x401000 + k, *MAIN], [])}, nodes)
            + event(ALLOC, 1000 * k, 8, k, k)
        )
    Path(f"{base}.1.memlog").unlink()  # rotated away, with the nodes it wrote first
    log = read_log(str(base))
    assert len(nodes) == 6 and log.first_file == 2
    assert {k: s.frames.tolist() for k, s in log.stacks.items()} == {
        2: [0x401002, *MAIN],
        3: [0x401003, *MAIN],
    }


@pytest.mark.parametrize("native", [False, True])
def test_sums_over_the_tree_are_those_of_its_expanded_stacks(build_fixture, native):
    """-t's flat and cumulative sums, made on the merged tree without expanding it, equal
    those of the expanded stacks: stacks with and without Python groups, with fewer,
    as many and more evaluation frames than groups, the interpreter's frames folded (or
    kept with native), recursion, and allocator frames at the leaf, between evaluation
    frames and alone."""
    binary = build_fixture("sites")
    exe = Mapped("/nonexistent/bin/sites", 0x555555554000, binary)
    libpython = Mapped("/nonexistent/lib/libpython3.11.so.1.0", 0x7FFFF7400000, size=0x400000)
    jemalloc = Mapped("/nonexistent/lib/libjemalloc.so.2", 0x7FFFF6000000, size=0x100000)
    evaluation = (libpython.at(0x1B2340), libpython.at(0x1B8000))
    evals = [libpython.at(0x1B5A1E), libpython.at(0x1B6000), libpython.at(0x1B7000)]
    program = [exe.frame(f) for f in ("site_small", "site_pages", "site_transient", "main")]
    natives = [*program, *evals, libpython.at(0x13F2C1), jemalloc.at(0x100), jemalloc.at(0x200)]
    rng = np.random.default_rng(5)
    stacks = []
    for i in range(2000):
        native = [natives[k] for k in rng.integers(0, len(natives), rng.integers(0, 12))]
        groups = [
            [P(int(f)) for f in rng.integers(1, 4, rng.integers(0, 4))]
            for _ in range(rng.integers(0, 4))
        ]
        stacks.append(TreeStack(native, (1, i + 1, 2, 2 * i + 3), python=groups))
    head = sites_header(exe, evaluation)
    maps = [*exe.maps(), *libpython.maps(), *jemalloc.maps()]
    prof = parse_heap(tree_file(RATE, head, stacks, maps=maps), "t.heap")
    sym = symbolize(prof, binary, merge=True, native=native)
    assert sym.tree is not None
    assert sym.tree.fold is not native, sym.tree.fold
    for flat, cum in assert_tree_sums_are_those_expanded(sym):
        assert cum.max() > flat.max() > 0


@pytest.mark.parametrize(
    "stacks",
    [
        [],
        [TreeStack([], (1, 10, 1, 10))],
        [TreeStack([], (1, 10, 1, 10), python=[[P(1)]])],
        [TreeStack([E1], (1, 10, 1, 10), python=[[], []])],
    ],
    ids=["no stack", "no frame", "Python frames alone", "empty groups alone"],
)
def test_sums_over_the_tree_of_stacks_of_few_frames(stacks):
    prof = parse_heap(tree_file(RATE, PYTHON_HEADER, stacks), "t.heap")
    sym = symbolize(prof, "/bin/true", merge=True, expand=False, allow_mismatch=True)
    assert sym.tree is not None and not len(sym.frames)
    assert_tree_sums_are_those_expanded(sym)


def assert_tree_sums_are_those_expanded(sym):
    """sym.tree's flat and cumulative sums by name equal those of its expanded stacks,
    under two sample indexes; those sums."""
    names, node_of = sym.node_names()
    frames, offsets = sym.tree.expand()
    out = []
    for index in ("inuse_space", "alloc_objects"):
        values = sym.value(index)
        expected = stacks_flat_cum(frames, offsets, node_of, values, len(names))
        got = sym.tree.flat_cum(node_of, values, len(names))
        for ours, theirs in zip(got, expected, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-9)
        assert got[0].sum() == pytest.approx(values.sum())  # each stack has one leaf
        out.append(expected)
    return out


def test_a_bomb_of_a_gibibyte_in_a_few_kilobytes_is_refused_within_the_limit():
    """zstd's RLE blocks grow 4 bytes into 128 KiB: 1 GiB of one byte is a stream of a few
    kB, of which a single piece of 16 kB would grow to 512 MiB. Each piece fed is cut to
    what the room left below the limit (64 MiB here) allows: the reader's peak stays
    near the limit."""
    import tracemalloc

    import zstandard

    compressor = zstandard.ZstdCompressor().compressobj()
    stream = compressor.compress(PAYLOAD)
    block = b"x" * (1 << 20)
    stream += b"".join(compressor.compress(block) for _ in range(1024)) + compressor.flush()
    data = b"memprof_tree/2\n" + stream
    assert len(stream) < 64 << 10
    tracemalloc.start()
    try:
        with pytest.raises(HeapFileError, match="expands past"):
            parse_heap(data, "x.heap")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * tree_reader._EXPANSION_FLOOR, peak
