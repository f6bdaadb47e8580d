"""The default unwinder (hybrid: each code address's .eh_frame rule, cached) against
libunwind, at -c 1 on real programs built without frame pointers: Debian's sqlite3 and
python3, libstdc++, signal handlers on the thread's stack and on a sigaltstack, a library
dlopen'ed after the first sample, a realigned stack frame.  Stacks are compared whole,
each frame as (object, offset) through the file's MAPPED_LIBRARIES, so that the two runs'
load addresses do not matter."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from support.profiling import one_heap, profile_run
from support.unwound import in_order, named_stacks

from mem_profiler.parser.read.heap_file import read_heap

NO_FRAME_POINTERS = ("-fomit-frame-pointer",)
SQL = (
    "create table t(a integer, b text, c real); insert into t select value, "
    "hex(randomblob(16)), random() from generate_series(1,20000); "
    "create index i1 on t(b); create index i2 on t(c);"
)
PYTHON_WORK = """
import json
data = [{"id": i, "name": "item%d" % i, "tags": ["a", str(i)], "score": i * 0.5}
        for i in range(3000)]
back = json.loads(json.dumps(data))
index = {d["name"]: d for d in back}
print(len(index))
"""

Frame = tuple[str, int | str]


def located_stacks(heap: Path) -> Counter[tuple[Frame, ...]]:
    """Allocations (sampled objects) per stack, each frame as (object's file name, offset
    in the file), a Python frame as ("python", its function, file and line: its address
    is a number given in the order the run met it), or ("", address) outside every file
    mapping."""
    prof = read_heap(heap)
    files = [m for m in prof.mappings if m.path.startswith("/")]

    def where(address: int) -> Frame:
        python = prof.python_frames.get(address)
        if python is not None:
            return "python", f"{python.name} {python.file}:{python.line}"
        for m in files:
            if m.start <= address < m.end:
                return os.path.basename(m.path), address - m.start + m.offset
        return "", address

    stacks: Counter[tuple[Frame, ...]] = Counter()
    for stack, objs in zip(prof.stacks, prof.acc_objs.tolist(), strict=True):
        stacks[tuple(map(where, stack))] += objs
    return stacks


def both_unwinders(argv: list, tmp_path: Path):
    """The located stacks of argv run at -c 1 under the default unwinder and libunwind."""
    runs = []
    for unwinder in ("hybrid", "libunwind"):
        proc, files = profile_run(argv, tmp_path / f"{unwinder}_", 1, "--unwind", unwinder)
        runs.append(located_stacks(one_heap(proc, files)))
    return runs


def debian_program(path: str) -> str:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run the tests with `make test`")
    return path


def test_sqlite3_stacks_are_libunwinds(tmp_path):
    hybrid, libunwind = both_unwinders(
        [debian_program("/usr/bin/sqlite3"), ":memory:", SQL], tmp_path
    )
    assert set(hybrid) == set(libunwind)
    # randomblob and random() make a few allocations differ from run to run
    assert sum(hybrid.values()) == pytest.approx(sum(libunwind.values()), rel=0.001)
    assert len(hybrid) > 200
    assert {frame[0] for stack in hybrid for frame in stack} >= {"sqlite3", "libsqlite3.so.0.8.6"}


def test_python3_stacks_are_libunwinds(tmp_path, monkeypatch):
    script = tmp_path / "work.py"
    script.write_text(PYTHON_WORK)
    monkeypatch.setenv("PYTHONMALLOC", "malloc")  # every object from malloc, not pymalloc
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    hybrid, libunwind = both_unwinders([debian_program("/usr/bin/python3"), script], tmp_path)
    assert set(hybrid) == set(libunwind)
    assert sum(hybrid.values()) == pytest.approx(sum(libunwind.values()), rel=0.001)
    assert len(hybrid) > 2000


@pytest.mark.parametrize(
    "fixture,flags,args",
    [
        ("cxx_stl", ("-O2", *NO_FRAME_POINTERS), ["300"]),  # strings, maps, exceptions, threads
        ("cxx_new", (), ["300"]),  # operator new in libstdc++
        ("thread_storm", (), ["2"]),  # start_thread, clone3
    ],
)
def test_fixture_stacks_are_libunwinds(build_fixture, tmp_path, fixture, flags, args):
    exe = build_fixture(fixture, *flags)
    hybrid, libunwind = both_unwinders([exe, *args], tmp_path)
    assert hybrid == libunwind
    assert len(hybrid) >= 5


def handler_stacks(exe: Path, tmp_path: Path, *argv) -> list[tuple[int, list[str]]]:
    """The named stacks of the allocations made by unwind_cases' signal handler."""
    proc, files = profile_run([exe, *argv], tmp_path / "named_", 1)
    return [
        (n, names)
        for n, names in named_stacks(one_heap(proc, files), exe)
        if names[0] == "handler_alloc"
    ]


@pytest.mark.parametrize("mode", ["signal", "altstack", "small_altstack"])
def test_signal_handler_stacks_are_libunwinds(build_fixture, tmp_path, mode):
    """The handler's frames, glibc's sigreturn trampoline, then the interrupted code's
    frames from the saved context (on the thread's stack also when the handler runs on
    a sigaltstack).  On an 8 KiB sigaltstack libunwind itself runs out of stack: there
    the stacks are only checked by name."""
    exe = build_fixture("unwind_cases", *NO_FRAME_POINTERS)
    if mode != "small_altstack":
        hybrid, libunwind = both_unwinders([exe, mode, 50], tmp_path)
        assert hybrid == libunwind
    handled = handler_stacks(exe, tmp_path, mode, 50)
    assert sum(n for n, _ in handled) == 50
    assert all(
        in_order(names, ["on_signal", "raise", "signal_here", "main", "_start"])
        for _, names in handled
    )


def test_interrupted_anywhere_unwinds_to_main(build_fixture, tmp_path):
    """SIGPROF lands on any instruction of spin, spin_step, rand_r and its PLT entry
    (prologues and epilogues included, where the CFA moves): from every one the walk
    continues through the interrupted frames to main."""
    exe = build_fixture("unwind_cases", *NO_FRAME_POINTERS)
    signals = 2000
    handled = handler_stacks(exe, tmp_path, "timer", signals)
    assert sum(n for n, _ in handled) == signals
    assert len(handled) > 5  # many interrupted places
    assert all(
        in_order(names, ["on_signal", "spin", "timer_signals", "main", "_start"])
        for _, names in handled
    )


START = ["main", "__libc_start_call_main", "__libc_start_main", "_start"]


@pytest.mark.parametrize(
    "mode,allocations,stack",
    [
        # a library built without frame pointers, dlopen'ed after the first sample
        ("dlopen", 3, ["plugin_alloc", "call_plugin", *START]),
        # a frame whose CFA is the word at rbp - 8 and whose rbp was saved at rbp (GCC's
        # stack realignment through a DRAP register), below a frame whose CFA is rbp + 16
        ("realigned", 20, ["realigned_alloc", "realigned_call", "realigned_outer", *START]),
    ],
)
def test_stacks_through_unusual_code_are_libunwinds(
    build_fixture, tmp_path, mode, allocations, stack
):
    exe = build_fixture("unwind_cases", *NO_FRAME_POINTERS)
    plugin = build_fixture("plugin", *NO_FRAME_POINTERS, shared=True, output="libplugin_nofp.so")
    argv = [exe, mode, plugin if mode == "dlopen" else allocations]
    hybrid, libunwind = both_unwinders(argv, tmp_path)
    assert hybrid == libunwind
    proc, files = profile_run(argv, tmp_path / "named_", 1)
    assert (allocations, stack) in named_stacks(one_heap(proc, files), exe)


def test_code_without_unwind_information_ends_the_stack(build_fixture, tmp_path):
    """Generated code (as a JIT's) has no FDE: its frame is the last one, and the walk
    stops there instead of guessing."""
    exe = build_fixture("unwind_cases", *NO_FRAME_POINTERS)
    proc, files = profile_run([exe, "jit", 40], tmp_path / "j_", 1)
    prof = read_heap(one_heap(proc, files))
    generated = [
        (stack, objs)
        for stack, objs in located_stacks(one_heap(proc, files)).items()
        if stack[0][0] == ""
    ]
    assert len(generated) == 1
    stack, objs = generated[0]
    address = stack[0][1]
    assert objs == 40 and len(stack) == 1 and isinstance(address, int)
    code = [m for m in prof.mappings if m.start <= address < m.end]
    assert len(code) == 1 and code[0].executable and code[0].path == ""
