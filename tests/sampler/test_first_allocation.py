"""Capture from the first allocation (issue 23): a window asked for at load sees the
allocations of the libraries initialized before the sampler, in their constructors,
as the counting preload (tests/fixtures/counting_preload.c) does. The fixture library
tests/fixtures/ctor_allocs.c keeps 1,000 blocks of 200 bytes made in its constructor,
its program tests/fixtures/ctor_program.c 10 of 3,000 made in main."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.counting import Truth, counted_environment, pid_files, plain_environment, totals
from support.paths import LIBMEMPROF, MEM_PROFILER
from support.profiling import report

CTOR_BLOCKS, CTOR_BLOCK_SIZE = 1000, 200  # ctor_allocs.c
MAIN_BLOCKS, MAIN_BLOCK_SIZE = 10, 3000  # ctor_program.c


@pytest.fixture(scope="module")
def ctor_library(build_fixture) -> Path:
    return build_fixture("ctor_allocs", shared=True)


@pytest.fixture(scope="module")
def programs(build_fixture, ctor_library) -> dict[str, Path]:
    """The program linked to the library (a DT_NEEDED, found through its RUNPATH), and
    without it."""
    linked = build_fixture(
        "ctor_program",
        f"-L{ctor_library.parent}",
        f"-Wl,--no-as-needed,-rpath,{ctor_library.parent}",
        "-lctor_allocs",
        output="ctor_program_linked",
    )
    return {"linked": linked, "plain": build_fixture("ctor_program")}


def run_exact(argv: list[str], env: dict[str, str], prefix: Path) -> subprocess.CompletedProcess:
    """`mem_profiler run -c 1` of argv."""
    return subprocess.run(
        [MEM_PROFILER, "run", "-c", "1", "-o", str(prefix), "--", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# How the library comes to be initialized before the sampler's own constructor: as the
# program's DT_NEEDED, or preloaded by the user (`run` puts libmemprof.so first in
# LD_PRELOAD, and the loader initializes the preloads from the last); and, set up
# by hand, preloaded ahead of libmemprof.so, which the loader initializes after it.
LOADINGS = ("needed", "preloaded_by_the_user", "preloaded_ahead")


@pytest.mark.parametrize("loading", LOADINGS)
def test_constructor_allocations_are_counted_exactly(
    loading, programs, ctor_library, counting_preload, tmp_path
):
    truth_prefix, prefix = tmp_path / "truth.", tmp_path / "p_"
    if loading == "needed":
        exe = programs["linked"]
        done = run_exact([str(exe)], counted_environment(counting_preload, truth_prefix), prefix)
    elif loading == "preloaded_by_the_user":
        exe = programs["plain"]
        env = counted_environment(counting_preload, truth_prefix)
        env["LD_PRELOAD"] = f"{ctor_library}:{counting_preload}"
        done = run_exact([str(exe)], env, prefix)
    else:
        exe = programs["plain"]
        env = plain_environment(
            LD_PRELOAD=f"{ctor_library}:{LIBMEMPROF}:{counting_preload}",
            COUNTING_PRELOAD_PREFIX=str(truth_prefix),
            MEMPROF_CAPTURE="1",
            MEMPROF_RATE="1",
            MEMPROF_PREFIX=str(prefix),
        )
        done = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ((pid, heap),) = pid_files(tmp_path, r"p_(\d+)\.0001\.heap").items()
    truth = Truth.read(tmp_path / f"truth.{pid}")

    assert truth.sizes[CTOR_BLOCK_SIZE] == CTOR_BLOCKS  # all of them in the window
    objects, space = report(heap, exe, "alloc_objects"), report(heap, exe, "alloc_space")
    live = report(heap, exe, "inuse_space")
    assert objects["ctor_blocks"][0] == CTOR_BLOCKS
    assert space["ctor_blocks"][0] == live["ctor_blocks"][0] == CTOR_BLOCKS * CTOR_BLOCK_SIZE
    assert objects["main_blocks"][0] == MAIN_BLOCKS
    assert space["main_blocks"][0] == MAIN_BLOCKS * MAIN_BLOCK_SIZE
    assert totals(heap) == (truth.objects, truth.bytes)


def test_a_debian_program_is_counted_from_its_first_allocation(counting_preload, tmp_path):
    """cmake's libraries allocate in their constructors (libstdc++'s emergency pool,
    p11-kit's locale, gnutls's tables): at -c 1 the profile holds every allocation the
    preload counts when it runs alone, without the sampler."""
    if shutil.which("cmake") is None:
        pytest.fail("cmake is not installed: run the tests with `make test`")
    argv = ["cmake", "--version"]
    alone = subprocess.run(
        argv, env=counted_environment(counting_preload, tmp_path / "alone."), timeout=120
    )
    assert alone.returncode == 0
    ((pid, counted),) = pid_files(tmp_path, r"alone\.(\d+)").items()
    truth = Truth.read(counted)
    assert not truth.in_window  # counted from its start

    done = run_exact(argv, plain_environment(), tmp_path / "p_")
    assert done.returncode == 0, done.stderr
    ((_, heap),) = pid_files(tmp_path, r"p_(\d+)\.0001\.heap").items()
    assert totals(heap) == (truth.objects, truth.bytes)
