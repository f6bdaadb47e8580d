"""`mem_profiler gate` end to end: the budget_sites fixture under the real sampler, its
peak, live bytes, leaks and totals known to the byte (tests/fixtures/budget_sites.c)."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support.paths import FIXTURES
from support.profiling import gate
from support.sampling_math import assert_estimate, relative_sd

from mem_profiler.gate.report import verdicts_from_json, verdicts_to_json

# budget_sites with no growth: every byte it allocates, in the order it does.
PEAK, LIVE_AT_EXIT, LEAK_PER_STACK, TOTAL_ALLOC = 1_250_000, 1_050_000, 1_000_000, 1_350_000
TRUTH = {
    "max-peak": PEAK,
    "max-live-at-exit": LIVE_AT_EXIT,
    "max-leak-per-stack": LEAK_PER_STACK,
    "max-total-alloc": TOTAL_ALLOC,
}


@pytest.fixture(scope="module")
def sites(build_fixture) -> Path:
    return build_fixture("budget_sites")


def budget_args(delta: int) -> list[str]:
    return [arg for kind, value in TRUTH.items() for arg in (f"--{kind}", str(value + delta))]


def results_of(path: Path) -> dict[str, dict]:
    [command] = json.loads(path.read_text())["commands"]
    return {r["budget"]["kind"]: r for r in command["results"]}


def test_budgets_at_the_truth_hold_to_the_byte(sites, tmp_path):
    proc = gate(
        *budget_args(0), "--json", tmp_path / "r.json", "--follow-fork", "--", sites, "0", "fork"
    )
    assert proc.returncode == 0, proc.stderr
    assert "budget_sites: done" in proc.stdout  # the command's own output
    results = results_of(tmp_path / "r.json")
    assert {kind: r["measured"] for kind, r in results.items()} == TRUTH
    assert all(r["sd"] == 0 and not r["exceeded"] for r in results.values())
    # The forked child (5 MB of its own) wrote a profile; it is counted, not judged.
    assert (
        "1 other process (forks of the command) wrote profiles; only the command's own "
        "process is judged"
    ) in proc.stderr
    assert "every budget holds (4 checked)" in proc.stderr


def test_a_byte_less_fails_each_budget_naming_the_stacks(sites, tmp_path):
    proc = gate(*budget_args(-1), "--json", tmp_path / "r.json", "--", sites)
    assert proc.returncode == 1, proc.stderr
    for kind, value in TRUTH.items():
        assert re.search(
            rf"^FAIL host {kind} {value:,} B .* > limit {value - 1:,} B .*exact$", proc.stderr, re.M
        ), proc.stderr
    blocks = dict(re.findall(r"^FAIL host (\S+) .*\n((?:     .*\n)+)", proc.stderr, re.M))
    first = {}
    for kind, block in blocks.items():
        m = re.search(
            rf"^ +([\d,]+) B  (\w+) {re.escape(str(FIXTURES / 'budget_sites.c'))}:\d+ < main ",
            block,
            re.M,
        )
        assert m is not None, block
        first[kind] = m.groups()
    assert first == {kind: ("1,000,000", "grow_site") for kind in TRUTH}
    # live at exit and leaks list the stacks still holding memory, and only those
    assert "keep_one" in blocks["max-live-at-exit"] and "scratch" not in blocks["max-live-at-exit"]
    assert "scratch" in blocks["max-total-alloc"] and "churn" in blocks["max-total-alloc"]
    assert "4 of 4 budgets exceeded" in proc.stderr


def test_sampled_mode_reports_estimates_with_their_error(sites, tmp_path):
    rate = 4096
    proc = gate(
        "-c",
        rate,
        "--max-total-alloc",
        "1MiB",
        "--max-leak-per-stack",
        "2MiB",
        "--max-peak",
        "1MiB",
        "--json",
        tmp_path / "r.json",
        "--",
        sites,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"sampled at -c {rate}: values are estimates" in proc.stderr
    assert re.search(
        rf"FAIL host max-total-alloc ~1\.\d\d MiB > limit 1\.00 MiB, "
        rf"estimated at -c {rate}: ±[\d.]+ KiB \(1 sd\)",
        proc.stderr,
    ), proc.stderr
    assert "(1 sd, an upper bound)" in proc.stderr  # the peak's error is a bound
    results = results_of(tmp_path / "r.json")
    total = results["max-total-alloc"]
    # Blocks of 100,000 B and more are sampled with p ~ 1; the 100 blocks of 1,000 B carry
    # the error (the other sites' share of it is below 1e-6).
    sd = relative_sd(100, 1000, rate) * 100_000 / TOTAL_ALLOC
    assert total["sd"] == pytest.approx(sd * TOTAL_ALLOC, rel=0.35)
    assert_estimate(total["measured"], TOTAL_ALLOC, sd, 0.10)
    assert results["max-leak-per-stack"]["measured"] == pytest.approx(LEAK_PER_STACK, rel=1e-6)


@pytest.fixture(scope="module")
def baseline(sites, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("baselines")
    proc = gate("--max-peak", "10MiB", "--save-profiles", folder, "--", sites, "0")
    assert proc.returncode == 0, proc.stderr
    return folder / "budget_sites.heap"


def test_growth_of_one_site_fails_naming_it_first(sites, baseline):
    proc = gate("--max-growth-vs", baseline, "--", sites, "10")
    assert proc.returncode == 1, proc.stderr
    assert (
        "FAIL host max-growth-vs budget_sites.heap: peak 1,350,000 B (1.29 MiB) > limit "
        "1,312,500 B (1.25 MiB) (baseline 1,250,000 B (1.19 MiB) + 5%), exact" in proc.stderr
    )
    grown = re.findall(r"^ +\+([\d,]+) B  (.*?)  \(([\d,]+) B -> ([\d,]+) B\)$", proc.stderr, re.M)
    site = re.escape(str(FIXTURES / "budget_sites.c"))
    grew, frames, before, after = grown[0]
    assert (grew, before, after) == ("100,000", "1,000,000", "1,100,000"), proc.stderr
    assert re.fullmatch(rf"grow_site {site}:\d+ < main {site}:\d+", frames), proc.stderr


def test_an_unchanged_rerun_passes_the_default_tolerance(sites, baseline):
    proc = gate("--max-growth-vs", baseline, "--", sites, "0")
    assert proc.returncode == 0, proc.stderr
    assert "ok   host max-growth-vs budget_sites.heap: peak 1,250,000 B" in proc.stderr


def test_tolerance_option(sites, baseline):
    proc = gate("--max-growth-vs", baseline, "--tolerance", "8%", "--", sites, "10")
    assert proc.returncode == 0, proc.stderr  # +8.0% is within 8%


BUDGET_FILE = """
[host]
max-leak-per-stack = "2 MiB"

[commands.small]
run = ["{exe}", "0"]
[commands.small.host]
max-peak = {peak}

[commands.grown]
run = "{exe} 10"
[commands.grown.host]
max-peak = {peak}
max-growth-vs = "{baseline}"
"""


def test_budget_file_commands_junit_and_json(sites, baseline, tmp_path):
    budget = tmp_path / "budget.toml"
    budget.write_text(BUDGET_FILE.format(exe=sites, peak=PEAK, baseline=baseline))
    proc = gate(
        "--budget",
        budget,
        "--junit",
        tmp_path / "r.xml",
        "--json",
        tmp_path / "r.json",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "mem_profiler gate: small:" in proc.stderr and "mem_profiler gate: grown:" in proc.stderr

    suites = assert_junit_valid(tmp_path / "r.xml")
    assert [
        (s.get("name"), s.get("tests"), s.get("failures"), s.get("errors")) for s in suites
    ] == [("memory budgets: small", "2", "0", "0"), ("memory budgets: grown", "3", "2", "0")]
    grown = {c.get("name"): c.find("failure") for c in suites[1].iter("testcase")}
    assert grown["host max-leak-per-stack 2.00 MiB"] is None
    peak, growth = grown["host max-peak 1.19 MiB"], grown[f"host max-growth-vs {baseline} +5%"]
    assert peak is not None and growth is not None and growth.text is not None
    assert "1,350,000 B" in peak.attrib["message"]
    assert "grow_site" in growth.text

    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["exit_status"] == 1 and doc["verdict"] == "exceeded"
    verdicts = verdicts_from_json(doc)
    assert [v.name for v in verdicts] == ["small", "grown"]
    assert verdicts_to_json(verdicts) == doc  # round trip, every field


def assert_junit_valid(path: Path) -> list[ET.Element]:
    """The file against the common JUnit schema (Ant's, windyroad/JUnit-Schema JUnit.xsd),
    checked structurally: elements, their order, required attributes and their types, and
    counts that agree with the testcases. Returns the testsuites."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and not root.attrib
    suites = list(root)
    suite_attrs = {
        "name",
        "timestamp",
        "hostname",
        "tests",
        "failures",
        "errors",
        "time",
        "package",
        "id",
    }
    for index, suite in enumerate(suites):
        assert suite.tag == "testsuite"
        assert suite_attrs <= set(suite.attrib) <= suite_attrs | {"skipped"}
        assert suite.attrib["name"].strip() and suite.attrib["hostname"].strip()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.attrib["timestamp"])
        assert int(suite.attrib["id"]) == index
        float(suite.attrib["time"])
        tags = [child.tag for child in suite]
        assert tags == [
            "properties",
            *["testcase"] * (len(tags) - 3),
            "system-out",
            "system-err",
        ], tags
        properties = suite.find("properties")
        assert properties is not None
        for prop in properties:
            assert prop.tag == "property" and set(prop.attrib) == {"name", "value"}
        cases = suite.findall("testcase")
        for case in cases:
            assert set(case.attrib) == {"name", "classname", "time"}
            float(case.attrib["time"])
            assert len(case) <= 1
            for outcome in case:
                assert outcome.tag in ("failure", "error", "skipped")
                assert "type" in outcome.attrib and set(outcome.attrib) <= {"type", "message"}
        for attr, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
            assert int(suite.get(attr, 0)) == sum(c.find(tag) is not None for c in cases)
        assert int(suite.attrib["tests"]) == len(cases)
    return suites


def test_a_command_that_fails_or_writes_no_profile_is_a_setup_error(tmp_path):
    # Judged (its profile was written at exit), but a failed command is no measurement.
    proc = gate(
        "--max-peak",
        "1GiB",
        "--junit",
        tmp_path / "r.xml",
        "--",
        sys.executable,
        "-c",
        "raise SystemExit(3)",
    )
    assert proc.returncode == 2
    assert re.search(
        r"^ok   host max-peak .*\nERROR \S*python\S* exited with status 3$", proc.stderr, re.M
    ), proc.stderr
    [suite] = assert_junit_valid(tmp_path / "r.xml")
    assert [c.get("name") for c in suite][1:-2] == ["host max-peak 1.00 GiB", "exit status"]
    assert suite.get("errors") == "1" and suite.get("failures") == "0"

    proc = gate("--max-peak", "1GiB", "--junit", tmp_path / "r.xml", "--", "sh", "-c", "kill -9 $$")
    assert proc.returncode == 2
    assert "wrote no profile: it was killed or ended without running exit handlers" in proc.stderr
    [suite] = assert_junit_valid(tmp_path / "r.xml")
    assert suite.get("errors") == "1"


def test_a_profile_that_dropped_samples_is_no_measurement(build_fixture, tmp_path):
    """40,000 stacks of their own overflow the stacks' memory at 1 MiB (16,384 stacks):
    the gate refuses to judge, unless told to; with room for them, the total is exact."""
    program, blocks = build_fixture("distinct_stacks"), 40_000
    total = f"--max-total-alloc={blocks * 64}"
    proc = gate(total, "--stack-memory", "1", "--", program, str(blocks), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert re.search(
        r"^ERROR \S+ dropped [0-9,]+ samples \(its stacks outgrew the sampler's memory for"
        r" them\), so every measure of it is too low: give them more \(--stack-memory MIB,"
        r" MEMPROF_STACK_MEMORY\) or sample less often \(--rate\), or judge the partial"
        r" profile with --allow-dropped$",
        proc.stderr,
        re.M,
    ), proc.stderr
    args: tuple[str | Path, ...] = (
        "--json",
        tmp_path / "partial.json",
        "--stack-memory",
        "1",
        "--allow-dropped",
    )
    proc = gate(total, *args, "--", program, str(blocks), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    partial = results_of(tmp_path / "partial.json")["max-total-alloc"]
    assert 0 < partial["measured"] < blocks * 64 and "samples were dropped" in str(partial)
    args = ("--json", tmp_path / "whole.json", "--stack-memory", "16")
    proc = gate(total, *args, "--", program, str(blocks), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert results_of(tmp_path / "whole.json")["max-total-alloc"]["measured"] == blocks * 64


def test_a_program_with_a_malloc_of_its_own_is_not_judged(build_fixture, tmp_path):
    """Its profile reads 0 bytes whatever it allocates: no budget holds on it."""
    program = build_fixture("own_malloc")
    proc = gate("--max-total-alloc=1MiB", "--", program, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert re.search(
        rf"^ERROR own_malloc has a malloc of its own \(in {re.escape(str(program))}\), which"
        r" the sampler's hooks do not see: .*: its budgets cannot be judged$",
        proc.stderr,
        re.M,
    ), proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-peak", "64 M", "--", "true"], "bad size '64 M': expected a number of bytes"),
        (["--max-peak", "gpu:1MiB", "--", "true"], "unknown heap 'gpu'"),
        (["--", "true"], "no budget for true"),
        (["--max-peak", "1MiB"], "no command to run"),
        (["--max-peak", "1MiB", "--", "/nonexistent/prog"], "cannot run '/nonexistent/prog'"),
        (["--budget", "missing.toml", "--", "true"], "budget file missing.toml does not exist"),
        (["--max-growth-vs", "missing.heap", "--", "true"], "missing.heap does not exist"),
        (
            [
                "--max-peak",
                "1MiB",
                "--tolerance",
                "lots",
                "--max-growth-vs",
                "x.heap",
                "--",
                "true",
            ],
            "bad tolerance 'lots'",
        ),
        (
            ["--max-peak", "1MiB", "--save-profiles", "nodir", "--", "true"],
            "folder nodir does not exist",
        ),
    ],
)
def test_usage_errors_are_one_sentence_and_exit_2(tmp_path, args, message):
    proc = gate(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
