"""pymalloc seen (issue 14): while a window is open the sampler wraps CPython's MEM and
OBJ allocators (sampler/hooks/hooks_python.c), in a preloaded run, in a window opened with -p
and in an attached process, and unwraps them when it closes. The reports of such a
window show each Python function whole, however many of its lines allocate (issue 21).

The truth is tracemalloc's, in a separate run of the same interpreter and script
(tests/fixtures/python_heap.py --truth): its traces are themselves allocations, which a
profiled run would count, and a truth taken apart cannot come from the sampler. Every
allocation of the script's `keep` is the same in both runs (PYTHONHASHSEED fixed)."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from support.interpreters import interpreters
from support.paths import LIBMEMPROF, MEM_PROFILER
from support.processes import wait_for
from support.profiling import run_parser, window_to_interrupt
from support.python_heap import (
    LIMITS,
    QUARTER,
    REPRODUCTION,
    SCRIPT,
    Program,
    Truth,
    assert_kept,
    expected,
    inuse,
    kept_in_a_run,
    program_env,
    read_truth,
)
from support.reports import (
    PPROF_PRINTED_MB,
    PRINTED_MB,
    MiB,
    flame_values,
    go_pprof_top,
    graph_cums,
    text_rows,
)
from support.sampling_math import assert_estimate, blocks_estimate_sd, relative_sd

from mem_profiler.control.control_block import segment_path
from mem_profiler.parser.common.sampling import sample_values
from mem_profiler.parser.read.heap_file import read_heap

# The script's --spread functions, each allocating on three lines, at a scale where
# their blocks are enough for the bounds at -c 1024
SPREAD = ("1", "--spread")
# Ids as they have been: 3.9 to 3.13 (pyenv's), debian-3.11.
INTERPRETERS = interpreters(prefix="")


@pytest.fixture(scope="session")
def truths(tmp_path_factory):
    """The Truth of an interpreter at a scale, from one run each."""
    found: dict[tuple[Path, str, tuple[str, ...]], Truth] = {}

    def of(python: Path, scale: str, *options: str) -> Truth:
        if (python, scale, options) not in found:
            out = tmp_path_factory.mktemp("truth") / "truth.json"
            found[python, scale, options] = read_truth(
                [python, SCRIPT, scale, *options], program_env(), out
            )
        return found[python, scale, options]

    return of


def assert_counted_once(heap: Path, truth: Truth, rate: int) -> None:
    """The bytearrays' buffers, which pymalloc passes on to malloc, are counted once: by
    the wrapper, not again by the malloc hook beneath it (the live samples, one per
    address, would not tell; what was allocated does)."""
    size, blocks = max(truth["keep_bytearrays"].items(), key=lambda item: item[0] * item[1])
    prof = read_heap(heap)
    of_size = prof.acc_bytes == size * prof.acc_objs  # stacks of blocks of that size only
    allocated = float(sample_values(prof, "alloc_space")[of_size].sum())
    assert_estimate(allocated, size * blocks, relative_sd(blocks, size, rate), LIMITS[rate])


def preloaded(python: Path, scale: str, *options: str, **sampler_env: str) -> Program:
    """The program with the sampler preloaded, idle, its control block made."""
    env = program_env() | {"LD_PRELOAD": str(LIBMEMPROF), **sampler_env}
    prog = Program(python, scale, env, options=options)
    wait_for(lambda: os.path.exists(segment_path(prog.pid)), what="a control block")
    return prog


class Window:
    """`mem_profiler -p PID -s 60 ...`, open once it returns, ended early with SIGINT
    as from a terminal."""

    def __init__(self, pid: int, rate: int, prefix: Path, *extra: str) -> None:
        self.proc = window_to_interrupt(pid, "-s", "60", "-c", str(rate), "-o", prefix, *extra)

    def close(self) -> Path:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0 and out.startswith("succeeded"), err
        (heap,) = out.split("!", 1)[1].split()  # "succeeded in collecting memory data!  PATH"
        return Path(heap)


def window_on(
    prog: Program, rate: int, prefix: Path, *extra: str, own: list[str] | None = None
) -> Path:
    """A window of `mem_profiler -p` while `keep` runs; the allocators, wrapped only
    while it is open, are the program's `own` (those current before it) again after it,
    and the blocks kept in it are freed through them."""
    unwrapped = own or prog.allocators()
    window = Window(prog.pid, rate, prefix, *extra)
    try:
        wait_for(prog.wrapped, what="the allocators to be wrapped")
        assert prog.ask("keep") == "kept"
    finally:
        heap = window.close()
    wait_for(lambda: prog.allocators() == unwrapped, what="the allocators to be unwrapped")
    assert prog.ask("churn") == "churned"
    assert prog.ask("drop") == "dropped"
    return heap


@pytest.mark.parametrize("rate", [1, 1024])
@pytest.mark.parametrize("python", INTERPRETERS)
def test_preloaded_run(python, rate, truths, tmp_path):
    """`mem_profiler run`: the window opens at load, before the interpreter exists; the
    control thread wraps the allocators once it is initialized. What `keep` adds between
    two dumps of the window is what it keeps."""
    launcher = (MEM_PROFILER, "run", "-c", str(rate), "-o", str(tmp_path / "run_"), "--")
    prog = Program(python, QUARTER, program_env(), launcher)
    assert_kept(kept_in_a_run(prog), truths(python, QUARTER), rate)


@pytest.mark.parametrize("rate", [1, 1024])
@pytest.mark.parametrize("python", INTERPRETERS)
def test_window_of_a_preloaded_interpreter(python, rate, truths, tmp_path):
    """The issue's reproduction: 20 MiB of strings, 48 of bytearrays, 24 of dicts kept
    in a window opened with -p, once seen as 50 MiB; at -c 1, whose figures are exact
    at any size, a quarter of it, as the other windows keep."""
    scale = REPRODUCTION if rate > 1 else QUARTER
    prog = preloaded(python, scale)
    try:
        heap = window_on(prog, rate, tmp_path / "p_")
        assert prog.quit() == 0
    finally:
        prog.kill()
    assert_kept(inuse(heap), truths(python, scale), rate)
    assert_counted_once(heap, truths(python, scale), rate)


@pytest.mark.parametrize("rate", [1, 1024])
@pytest.mark.parametrize("python", INTERPRETERS)
def test_attached_interpreter(python, rate, truths, tmp_path):
    """`mem_profiler -p PID --attach`: the sampler injected into an interpreter started
    without it."""
    prog = Program(python, QUARTER, program_env())
    try:
        heap = window_on(prog, rate, tmp_path / "a_", "--attach")
        assert prog.quit() == 0
    finally:
        prog.kill()
    assert_kept(inuse(heap), truths(python, QUARTER), rate)
    assert_counted_once(heap, truths(python, QUARTER), rate)


@pytest.mark.parametrize("python", INTERPRETERS)
def test_tracemalloc_started_after_the_wrapper(python, truths, tmp_path):
    """tracemalloc started while our wrapper is current wraps it and counts what it
    counts alone; a window closing under it leaves its wrapper in place (ours stays
    beneath, forwarding), and the next window that closes while ours is current again
    unwraps."""
    kept, _ = expected(truths(python, QUARTER), 1)
    prog = preloaded(python, QUARTER)
    try:
        unwrapped = prog.allocators()
        window = Window(prog.pid, 1024, tmp_path / "t_")
        try:
            wait_for(prog.wrapped, what="the allocators to be wrapped")
            traced = int(prog.ask("trace keep"))
            tracer = prog.allocators()
        finally:
            window.close()
        assert abs(traced - kept) <= 0.01 * kept, (traced, kept)
        assert not any(Path(path).name == "libmemprof.so" for path in tracer)
        for _ in range(20):  # the pending call has long run: ours never restored over it
            assert prog.allocators() == tracer
        assert prog.ask("untrace") == "untraced"
        assert prog.wrapped()  # tracemalloc put back what it wrapped: ours
        assert prog.ask("churn") == "churned"
        window_on(prog, 1024, tmp_path / "u_", own=unwrapped)
        assert prog.quit() == 0
    finally:
        prog.kill()


@pytest.mark.parametrize("python", INTERPRETERS[-1:])
def test_python_allocators_left_alone_when_asked(python, tmp_path):
    """MEMPROF_PYTHON=0: a window leaves the interpreter's allocators as they are."""
    prog = preloaded(python, QUARTER, MEMPROF_PYTHON="0")
    try:
        own = prog.allocators()
        window = Window(prog.pid, 1024, tmp_path / "n_")
        try:
            for _ in range(20):  # each answer runs Python code: a pending call would run
                assert prog.allocators() == own
        finally:
            window.close()
        assert prog.quit() == 0
    finally:
        prog.kill()


@pytest.fixture(scope="session")
def spread_windows(tmp_path_factory):
    """The .heap of a -p window over the --spread functions' `keep`, one per interpreter
    and rate."""
    found: dict[tuple[Path, int], Path] = {}

    def of(python: Path, rate: int) -> Path:
        if (python, rate) not in found:
            prog = preloaded(python, *SPREAD)
            try:
                found[python, rate] = window_on(
                    prog, rate, tmp_path_factory.mktemp("spread") / "p_"
                )
                assert prog.quit() == 0
            finally:
                prog.kill()
        return found[python, rate]

    return of


def function_label(function: str) -> str:
    """A Python function as the reports name it by default."""
    return f"{function} ({SCRIPT.name})"


def json_cums(heap: Path, *options: str) -> dict[str, float]:
    """{name: cum} of `mem_parser --json`."""
    return {
        row["name"]: row["cum"]
        for row in json.loads(run_parser("-f", heap, "--json", *options).stdout)["rows"]
    }


@pytest.mark.parametrize("rate", [1, 1024])
@pytest.mark.parametrize("python", INTERPRETERS)
def test_reports_show_each_function_whole(python, rate, truths, spread_windows, tmp_path):
    """Each function, whose three lines allocate, is one node holding what tracemalloc
    counts on all of them: in --json and the flame graph's data, and as -t and the call
    graph print it."""
    heap = spread_windows(python, rate)
    flame, svg = tmp_path / "f.html", tmp_path / "g.svg"
    _, text = text_rows(run_parser("-f", heap, "-t", "--flame", flame).stdout)
    run_parser("-f", heap, "-s", "-o", svg)
    shown = {
        "--json": json_cums(heap),
        "--flame": flame_values(flame.read_text()),
    }
    printed = {
        "-t": {name: float(row[2]) * MiB for name, row in text.items()},
        "-s": graph_cums(svg.read_text()),
    }
    for function, sizes in truths(python, *SPREAD).items():
        name = function_label(function)
        kept, rel_sd = blocks_estimate_sd(sizes, rate)
        for values in shown.values():
            assert_estimate(values[name], kept, rel_sd, LIMITS[rate])
        for report, values in printed.items():
            assert abs(values[name] - shown["--json"][name]) <= PRINTED_MB, (report, name)


@pytest.mark.parametrize("python", INTERPRETERS)
def test_lines_split_each_function_by_line(python, truths, spread_windows, tmp_path):
    """With --lines a function is a row per line it ran, which add up to it; so in `go
    tool pprof -top -lines` of our --pprof, whose -top shows it whole, as ours does."""
    heap = spread_windows(python, 1)
    whole, by_line = json_cums(heap), json_cums(heap, "--lines")
    profile = tmp_path / "p.pb.gz"
    run_parser("-f", heap, "--pprof", profile)
    pprof = {name: cum for name, _, cum in go_pprof_top(profile, tmp_path)[1]}
    pprof_lines = [name for name, _, _ in go_pprof_top(profile, tmp_path, "-lines")[1]]
    for function in truths(python, *SPREAD):
        lines = [
            cum
            for name, cum in by_line.items()
            if re.fullmatch(rf"{function} \({SCRIPT.name}:\d+\)", name)
        ]
        assert len(lines) >= 3 and sum(lines) == pytest.approx(whole[function_label(function)])
        assert abs(pprof[function] - whole[function_label(function)]) <= PPROF_PRINTED_MB
        assert len([name for name in pprof_lines if name.startswith(f"{function} {SCRIPT}:")]) >= 3
