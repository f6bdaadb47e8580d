"""Heap profiles written by the peers' own profilers, read by mem_parser and checked
against the peers' own readers on the same files and against the fixture's known bytes:
Debian's jemalloc (its shared library and a static link) against jeprof."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.jeprof import jeprof_text, text_table
from support.paths import MEM_PARSER

LIBJEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
LIBJEMALLOC_PIC = "/usr/lib/x86_64-linux-gnu/libjemalloc_pic.a"  # Debian's libjemalloc-dev
MiB = 1 << 20
SITES = (10_000, 40_000, 10)  # tests/fixtures/sites.c: site_pages, site_small, site_transient
# what each site keeps: its blocks and the array of their pointers
PAGES_MB, SMALL_MB = (n * (size + 8) / MiB for n, size in ((SITES[0], 4096), (SITES[1], 256)))


def jemalloc_run(exe: Path, prefix: Path, conf: str = "", preload: bool = False) -> Path:
    """Run exe on SITES with jemalloc's profiling on (1 KiB mean sample interval); the
    file it writes at exit."""
    env = dict(os.environ, MALLOC_CONF=f"prof:true,lg_prof_sample:10,prof_final:true{conf}")
    env["MALLOC_CONF"] += f",prof_prefix:{prefix}"
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = LIBJEMALLOC
    subprocess.run([exe, *map(str, SITES)], env=env, check=True, capture_output=True)
    (heap,) = prefix.parent.glob(f"{prefix.name}.*.heap")
    return heap


@pytest.fixture(scope="module", params=["shared", "static"])
def jemalloc_profile(request, build_fixture, tmp_path_factory) -> tuple[str, Path, Path]:
    """(how jemalloc was linked, the program, the file jemalloc wrote)."""
    if request.param == "shared":
        exe = build_fixture("sites")
    else:
        exe = build_fixture(
            "sites", output="sites_jemalloc", libs=(LIBJEMALLOC_PIC, "-lstdc++", "-lm")
        )
    prefix = tmp_path_factory.mktemp("jemalloc") / "je"
    return request.param, exe, jemalloc_run(exe, prefix, preload=request.param == "shared")


def test_jemalloc_profile_names_the_allocating_functions(jemalloc_profile):
    link, exe, heap = jemalloc_profile
    total, rows = text_table([MEM_PARSER, "-p", exe, "-f", heap, "-t"])
    jeprof_total, jeprof_rows = jeprof_text(exe, heap)
    assert total == pytest.approx(jeprof_total, rel=0.01)
    assert [name for name, _, _ in rows[:2]] == ["site_pages", "site_small"], rows[:4]
    flat = {name: value for name, value, _ in rows}
    assert flat["site_pages"] == pytest.approx(PAGES_MB, rel=0.02)
    assert flat["site_small"] == pytest.approx(SMALL_MB, rel=0.05)
    if link == "shared":  # jeprof leaves a static jemalloc's prof_backtrace_impl on top
        theirs = {name: value for name, value, _ in jeprof_rows}
        assert theirs["site_pages"] == pytest.approx(flat["site_pages"], abs=0.11)
        assert theirs["site_small"] == pytest.approx(flat["site_small"], abs=0.11)


def test_jemalloc_profile_with_thread_names(build_fixture, tmp_path):
    exe = build_fixture("sites")
    heap = jemalloc_run(exe, tmp_path / "je", ",prof_sys_thread_name:true", preload=True)
    assert "] sites\n" in heap.read_text()  # the main thread's line ends with its name
    total, rows = text_table([MEM_PARSER, "-p", exe, "-f", heap, "-t"])
    assert total == pytest.approx(jeprof_text(exe, heap)[0], rel=0.01)
    assert [name for name, _, _ in rows[:2]] == ["site_pages", "site_small"]
