"""Allocations that die young (mem_parser --temporary, parser/log/lifetimes.py): on
tests/fixtures/lifetimes.c, whose sites free their blocks at once, after one other
allocation, after many, never, or from another thread, a log of every allocation (-c 1)
gives each site exactly the bytes that memray's definition makes temporary, at N = 1
(heaptrack's too) and N = 2; a sampled log is refused in one sentence."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from support.paths import MEM_PARSER
from support.profiling import one_heap, profile_run, run_parser

BLOCKS = 300
SITE_LINE = re.compile(r"^site (\w+) blocks=(\d+) bytes=(\d+)$", re.M)


@pytest.fixture(scope="module")
def logged(build_fixture, tmp_path_factory):
    """The fixture run in log mode at -c 1: its binary, its .heap and {site: bytes}."""
    exe = build_fixture("lifetimes")
    proc, files = profile_run(
        [exe, BLOCKS], tmp_path_factory.mktemp("lifetimes") / "l_", 1, "--mode", "log"
    )
    sites = {m[0]: int(m[2]) for m in SITE_LINE.findall(proc.stdout)}
    assert len(sites) == 6, proc.stdout
    return exe, one_heap(proc, files), sites


def temporary_cums(exe, heap, *options: str) -> tuple[dict[str, float], float]:
    """{function: cum} of --temporary's JSON table, and its total."""
    table = json.loads(run_parser("-p", exe, "-f", heap, "--temporary", "--json", *options).stdout)
    return {row["name"]: row["cum"] for row in table["rows"]}, table["total"]


@pytest.mark.parametrize("others", [1, 2])
def test_temporary_bytes_per_site_exact_in_a_log_of_every_allocation(logged, others):
    """Freed before `others` other allocations of its thread: freed_at_once's blocks and
    freed_inside's (nothing between), freed_after_one's from N = 2 (freed_inside's block
    between), the last N of kept_a_while's (freed after the loop that made them, with
    only frees after them); never kept_to_the_end's, nor freed_elsewhere's, which another
    thread frees."""
    exe, heap, sites = logged
    options = () if others == 1 else ("--temporary-allocs", str(others))
    cums, total = temporary_cums(exe, heap, *options)
    own = {  # each site's own temporary bytes
        "freed_at_once": sites["freed_at_once"],
        "freed_inside": sites["freed_inside"],
        "freed_after_one": sites["freed_after_one"] if others > 1 else 0,
        "kept_a_while": others * sites["kept_a_while"] // BLOCKS,
        "kept_to_the_end": 0,
        "freed_elsewhere": 0,
    }
    expected = {**own, "freed_after_one": own["freed_after_one"] + own["freed_inside"]}
    assert {name: cums.get(name, 0) for name in expected} == expected
    assert total == sum(own.values())


def test_a_sampled_log_is_refused_in_one_sentence(build_fixture, tmp_path):
    exe = build_fixture("lifetimes")
    proc, files = profile_run([exe, "20"], tmp_path / "s_", 1024, "--mode", "log")
    done = subprocess.run(
        [MEM_PARSER, "-p", exe, "-f", one_heap(proc, files), "--temporary"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.endswith(
        "--temporary needs every allocation of the host heap in the log, and this one was"
        " sampled at -c 1024: capture with -c 1 and --mode log (the allocations made"
        " between one and its free decide it).\n"
    ), done.stderr
