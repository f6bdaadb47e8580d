"""Debian's arm64 programs under the aarch64 sampler (issue 26), run by qemu-user: the
totals of sqlite3's window against the counting preload built for arm64 (the x86
tests' truth and tolerances: tests/sampler/test_real_programs.py), every allocation
at -c 1 and sampled at -c 1024, through its stripped libraries' .eh_frame; and Debian's
arm64 python3.11 running tests/fixtures/python_sites.py, each Python function's bytes
against what tracemalloc counted in the same interpreter (test_python_frames.py's
truth and bounds), also with pymalloc wrapped (test_python_heap.py's)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import arm64
from support.counting import (
    SAMPLED_RATE,
    Truth,
    assert_exact,
    assert_sampled,
    counted_environment,
    pid_files,
)
from support.paths import FIXTURES, MEM_PROFILER
from support.profiling import one_heap
from support.python_heap import (
    QUARTER,
    SCRIPT,
    TWENTIETH,
    Program,
    assert_kept,
    kept_in_a_run,
    program_env,
    read_truth,
)
from support.python_sites import LIMITS, function_totals, size_options, truth_sd
from support.sampling_math import assert_estimate

from mem_profiler.core.profile import Drops
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.symbols.symbolize import symbolize

pytestmark = [arm64.skip_unless_arm64, pytest.mark.long]
# as on x86-64: 5 sd of the -c 1024 estimates fit in their bounds; at -c 1, exact at any
# size, a tenth (qemu unwinds every allocation)
SQLITE_ROWS = {1: 25_000, SAMPLED_RATE: 250_000}


def sql(rows: int) -> str:
    return (
        "create table t(a integer, b text, c real); insert into t select value, "
        f"hex(randomblob(16)), random() from generate_series(1, {rows}); "
        "create index i1 on t(b); create index i2 on t(c);"
    )


@pytest.fixture(scope="module")
def counting_preload(tmp_path_factory):
    return arm64.build("counting_preload", tmp_path_factory.mktemp("arm64"), "-O2", shared=True)


@pytest.mark.parametrize("rate", [1, SAMPLED_RATE])
def test_sqlite3_totals_against_the_counting_preload(counting_preload, tmp_path, rate):
    sqlite3 = arm64.SYSROOT / "usr" / "bin" / "sqlite3"
    env = counted_environment(counting_preload, tmp_path / "truth.")
    proc, files = arm64.run(
        [sqlite3, ":memory:", sql(SQLITE_ROWS[rate])], tmp_path / "p_", rate, env=env
    )
    heap = one_heap(proc, files)
    (truth_file,) = pid_files(tmp_path, r"truth\.(\d+)").values()
    truth = Truth.read(truth_file)
    assert truth.in_window and truth.objects > SQLITE_ROWS[rate]
    assert read_heap(heap).drops == Drops(0, 0, 0, 0)
    (assert_exact if rate == 1 else assert_sampled)(heap, truth)


@pytest.mark.parametrize("rate", [1, SAMPLED_RATE])
def test_python_functions_keep_what_tracemalloc_counts(tmp_path, rate):
    python = arm64.SYSROOT / "usr" / "bin" / "python3.11"
    env = dict(os.environ, PYTHONMALLOC="malloc")
    report_path = tmp_path / "report.json"
    proc, _ = arm64.run(
        [python, FIXTURES / "python_sites.py", report_path, *size_options(rate)],
        tmp_path / "p_",
        rate,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())
    profile = read_heap(Path(report["heap"]))
    assert profile.meta["python"].startswith("3.11.")
    ours = function_totals(symbolize(profile, profile.exe))
    for name, sizes in report["sizes"].items():
        truth, sd = truth_sd(sizes, rate)
        assert name in ours, f"{name} is in no stack"
        assert_estimate(ours[name], truth, sd, LIMITS[rate])


@pytest.mark.parametrize("rate", [1, SAMPLED_RATE])
def test_pymalloc_is_wrapped_and_what_keep_keeps_is_seen(tmp_path, rate):
    """Debian's arm64 python3.11 with pymalloc (its default): the window opens at load,
    the control thread wraps the MEM and OBJ allocators once the interpreter exists, and
    what tests/fixtures/python_heap.py's `keep` adds between two dumps is what it kept
    in a run of its own (tracemalloc's count): test_python_heap.py's preloaded run."""
    python = arm64.SYSROOT / "usr" / "bin" / "python3.11"
    qemu = (arm64.QEMU, "-L", str(arm64.SYSROOT))
    scale = QUARTER if rate > 1 else TWENTIETH
    truth = read_truth([*qemu, python, SCRIPT, scale], program_env(), tmp_path / "truth.json")
    launcher = (MEM_PROFILER, "run", "-c", str(rate), "-o", str(tmp_path / "run_"), "--", *qemu)
    env = program_env() | {"MEMPROF_LIB": str(arm64.SAMPLER)}
    assert_kept(kept_in_a_run(Program(python, scale, env, launcher)), truth, rate)
