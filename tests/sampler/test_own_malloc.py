"""A program with a malloc of its own (issue 23), as Chromium's PartitionAlloc or a
statically linked jemalloc: its allocations never reach the sampler's hooks, and
instead of a silent `Total: 0.0 MB` one sentence says so, at load in `run`, in the
answer of a capture with -p (preloaded or attached) and in the profile, which
mem_parser prints as a warning. tests/fixtures/own_malloc.c allocates 1,000 blocks of
4 KiB from its own arena and prints what the arena handed out."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support.paths import LIBMEMPROF, MEM_PARSER
from support.processes import wait_for
from support.profiling import capture_cli, one_heap, profile_run

from mem_profiler.control.controller import has_sampler

BLOCKS, BLOCK_SIZE = 1000, 4096  # own_malloc.c
OWN_MALLOC = "has a malloc of its own"


def sentence(exe: Path) -> str:
    return f"{exe.name} {OWN_MALLOC} (in {exe}), which the sampler's hooks do not see"


@pytest.fixture(scope="module")
def own_malloc(build_fixture) -> Path:
    return build_fixture("own_malloc")


def parser_stderr(heap: Path) -> str:
    done = subprocess.run(
        [MEM_PARSER, "-t", "-f", str(heap)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_run_and_the_profile_say_so(own_malloc, tmp_path):
    proc, files = profile_run([own_malloc], tmp_path / "p_")
    heap = one_heap(proc, files)
    m = re.fullmatch(r"arena (\d+)\n", proc.stdout)
    assert m is not None, proc.stdout
    arena = int(m[1])
    assert arena >= BLOCKS * BLOCK_SIZE  # what the profile misses
    assert proc.stderr.count(OWN_MALLOC) == 1, proc.stderr
    assert sentence(own_malloc) in proc.stderr
    assert f"warning: {sentence(own_malloc)}" in parser_stderr(heap)


def test_a_program_on_the_c_librarys_malloc_is_not_warned_about(build_fixture, tmp_path):
    proc, files = profile_run([build_fixture("ctor_program")], tmp_path / "p_")
    assert OWN_MALLOC not in proc.stderr
    assert OWN_MALLOC not in parser_stderr(one_heap(proc, files))


@pytest.mark.parametrize("attach", [False, True], ids=["preloaded", "attached"])
def test_a_capture_with_p_says_so(attach, own_malloc, tmp_path):
    env = {} if attach else {"LD_PRELOAD": str(LIBMEMPROF)}
    with subprocess.Popen(
        [own_malloc, "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    ) as target:
        assert target.stdin is not None and target.stdout is not None
        try:
            assert target.stdout.readline().startswith("arena ")
            if not attach:
                wait_for(lambda: has_sampler(target.pid), what="the control block")
            args = ["--attach"] if attach else []
            done = capture_cli(target.pid, *args, "-s", "0.3", "-o", tmp_path / "p_")
            assert done.returncode == 0, done.stderr
            assert done.stderr.count(OWN_MALLOC) == 1, done.stderr
            assert sentence(own_malloc) in done.stderr
            heap = Path(done.stdout.split()[-1])
            assert f"warning: {sentence(own_malloc)}" in parser_stderr(heap)
        finally:
            target.stdin.close()
    assert target.returncode == 0
