"""How long allocations live (mem_parser --lifetimes and --temporary,
parser/log/lifetimes.py, parser/model/lifetimes.py): on tests/fixtures/lifetimes.c, whose
sites free their blocks at once, after one other allocation, after many, after a sleep,
never, or from another thread, a log of every allocation (-c 1) gives each site exactly
the bytes that memray's definition makes temporary, at N = 1 (heaptrack's too) and N = 2,
and its bytes by lifetime; a sampled log gives lifetimes within the sampling error, and
refuses --temporary in one sentence. A window without a log counts its sampled frees
itself: the same at -c 1 for N = 1, and estimates at a rate."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from support.paths import MEM_PARSER
from support.profiling import one_heap, profile_run, run_parser
from support.sampling_math import assert_estimate, relative_sd

BLOCKS = 300
ASLEEP = 10  # kept_asleep's blocks, each living 20 ms at least
# the lifetimes' bins from 10 ms up
TEN_MS_OR_MORE = ("<100ms", "<1s", ">=1s")
SITE_LINE = re.compile(r"^site (\w+) blocks=(\d+) bytes=(\d+)$", re.M)


def every_allocation(build_fixture, folder, *options: str) -> tuple:
    """The fixture run at -c 1 with `options`: its binary, its .heap and {site: bytes}."""
    exe = build_fixture("lifetimes")
    proc, files = profile_run([exe, BLOCKS], folder / "l_", 1, *options)
    sites = {m[0]: int(m[2]) for m in SITE_LINE.findall(proc.stdout)}
    assert len(sites) == 7, proc.stdout
    return exe, one_heap(proc, files), sites


@pytest.fixture(scope="module")
def logged(build_fixture, tmp_path_factory):
    """In log mode."""
    return every_allocation(build_fixture, tmp_path_factory.mktemp("lifetimes"), "--mode", "log")


def temporary_cums(exe, heap, *options: str) -> tuple[dict[str, float], float]:
    """{function: cum} of --temporary's JSON table, and its total."""
    table = json.loads(run_parser("-p", exe, "-f", heap, "--temporary", "--json", *options).stdout)
    return {row["name"]: row["cum"] for row in table["rows"]}, table["total"]


def own_temporary(sites: dict[str, int], others: int) -> dict[str, int]:
    """Each site's own temporary bytes, freed before `others` other allocations."""
    return {
        "freed_at_once": sites["freed_at_once"],
        "freed_inside": sites["freed_inside"],
        "freed_after_one": sites["freed_after_one"] if others > 1 else 0,
        "kept_a_while": others * sites["kept_a_while"] // BLOCKS,
        "kept_asleep": others * sites["kept_asleep"] // ASLEEP,
        "kept_to_the_end": 0,
        "freed_elsewhere": 0,
    }


def lifetime_rows(exe, heap) -> dict[str, dict]:
    """--lifetimes --json's rows by their site (the caller of the fixture's `block`)."""
    table = json.loads(run_parser("-p", exe, "-f", heap, "--lifetimes", "--json").stdout)
    return {row["stack"][1]: row for row in table["stacks"] if row["stack"][0] == "block"}


def assert_every_site_by_lifetime(rows: dict[str, dict], sites: dict[str, int]) -> None:
    """Each site's bytes, all of them in one bin or another; kept_to_the_end's all live at
    the end and no other site's; kept_asleep's all in the bins of 10 ms and more."""
    assert {site: row["bytes"] for site, row in rows.items()} == sites
    for site, row in rows.items():
        assert sum(row["bins"].values()) == row["bytes"], site
        assert row["bins"]["live"] == (row["bytes"] if site == "kept_to_the_end" else 0), site
    asleep = rows["kept_asleep"]
    assert sum(asleep["bins"][name] for name in TEN_MS_OR_MORE) == asleep["bytes"]


def test_lifetimes_by_site_in_a_log_of_every_allocation(logged):
    """Each site's bytes, all of them in one bin or another; kept_to_the_end's all live
    at the end and no other site's; the temporary ones exactly as --temporary's."""
    exe, heap, sites = logged
    rows = lifetime_rows(exe, heap)
    assert_every_site_by_lifetime(rows, sites)
    assert {site: row["temporary"] for site, row in rows.items()} == own_temporary(sites, 1)


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
    own = own_temporary(sites, others)
    expected = {**own, "freed_after_one": own["freed_after_one"] + own["freed_inside"]}
    assert {name: cums.get(name, 0) for name in expected} == expected
    assert total == sum(own.values())


def test_a_sampled_log_gives_lifetimes_and_refuses_temporary(build_fixture, tmp_path):
    """At -c 1024 each site's bytes are estimates (kept_to_the_end's, of blocks of 5,000
    B, within the sampling error, all live), its temporary bytes unknown (null)."""
    exe = build_fixture("lifetimes")
    proc, files = profile_run([exe, BLOCKS], tmp_path / "s_", 1024, "--mode", "log")
    heap = one_heap(proc, files)
    kept = lifetime_rows(exe, heap)["kept_to_the_end"]
    truth = BLOCKS * 5000
    assert_estimate(kept["bytes"], truth, relative_sd(BLOCKS, 5000, 1024), 0.05)
    assert kept["bins"]["live"] == kept["bytes"] and kept["temporary"] is None
    done = subprocess.run(
        [MEM_PARSER, "-p", exe, "-f", heap, "--temporary"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.endswith(
        "--temporary needs every allocation of the host heap in the log, and this one was"
        " sampled at -c 1024: capture with -c 1 and --mode log (the allocations made"
        " between one and its free decide it).\n"
    ), done.stderr


@pytest.fixture(scope="module")
def counted(build_fixture, tmp_path_factory):
    """In table mode."""
    return every_allocation(build_fixture, tmp_path_factory.mktemp("counted"))


def test_a_window_counts_lifetimes_and_temporary_bytes_of_every_allocation(counted):
    """Without an event log, at -c 1: each site's bytes all in one bin or another, live at
    the end only kept_to_the_end's, and temporary exactly what memray's and heaptrack's
    definition makes them (N = 1), in --lifetimes and --temporary alike; kept_asleep's in
    the bins of 10 ms and more, as the sampler's ticks measure them."""
    exe, heap, sites = counted
    rows = lifetime_rows(exe, heap)
    assert_every_site_by_lifetime(rows, sites)
    own = own_temporary(sites, 1)
    assert {site: row["temporary"] for site, row in rows.items()} == own
    cums, total = temporary_cums(exe, heap)
    expected = {**own, "freed_after_one": own["freed_inside"]}
    assert {name: cums.get(name, 0) for name in expected} == expected
    assert total == sum(own.values())


def test_a_sampled_window_estimates_temporary_bytes(build_fixture, tmp_path):
    """At -c 1024 without an event log, each sample is known temporary or not (nothing
    its thread allocated between, by its running count of bytes): freed_at_once's and
    freed_inside's temporary bytes within the sampling error, none of freed_after_one's
    (freed_inside allocates between), kept_to_the_end's or freed_elsewhere's; N above 1
    needs a log, and says so."""
    exe, blocks = build_fixture("lifetimes"), 4000
    proc, files = profile_run([exe, blocks], tmp_path / "s_", 1024)
    heap = one_heap(proc, files)
    rows = lifetime_rows(exe, heap)
    for site, size in (("freed_at_once", 1000), ("freed_inside", 3000)):
        truth = blocks * size
        assert_estimate(rows[site]["temporary"], truth, relative_sd(blocks, size, 1024), 0.07)
    for site in ("freed_after_one", "kept_to_the_end", "freed_elsewhere"):
        assert rows[site]["temporary"] == 0, site
    kept = rows["kept_to_the_end"]
    assert kept["bins"]["live"] == kept["bytes"]
    done = subprocess.run(
        [MEM_PARSER, "-p", exe, "-f", heap, "--temporary", "--temporary-allocs", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and "--mode log" in done.stderr, done.stderr
