"""Budget definitions without running anything: sizes and their units, tolerances, budget
files (TOML), which budget wins, which commands run."""

from __future__ import annotations

import pytest

from mem_profiler.core.errors import BudgetError
from mem_profiler.core.units import parse_size
from mem_profiler.gate.budgets import (
    Budget,
    category_option,
    is_exceeded,
    load_budget_file,
    merge,
    option_budgets,
    parse_tolerance,
    plan_jobs,
    size_budget,
)
from mem_profiler.gate.kinds import CATEGORY, GROWTH, LEAK_PER_STACK, PEAK


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4096", 4096),
        (4096, 4096),
        ("0", 0),
        ("64MiB", 64 * 2**20),
        ("64 MiB", 64 * 2**20),
        ("1KiB", 1024),
        ("2 GiB", 2 * 2**30),
        ("1TiB", 2**40),
        ("1.5 MiB", 1572864),
        ("1KB", 1000),
        ("64 MB", 64_000_000),
        ("3GB", 3 * 10**9),
        ("2 TB", 2 * 10**12),
        ("10 B", 10),
        ("1mib", 2**20),
        ("0.5 KiB", 512),
    ],
)
def test_sizes_in_explicit_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "MiB", "-1", "1.5", "12 M", "1 k", "64 Mbit", "1e6", "0x100", True, -5]
)
def test_bad_sizes_say_what_is_expected(text):
    with pytest.raises(BudgetError, match=r"bad size .*KiB, MiB, GiB binary; KB, MB, GB"):
        parse_size(text)


@pytest.mark.parametrize(
    "text, expected", [("5%", 0.05), ("5", 0.05), ("2.5 %", 0.025), (10, 0.10), ("0%", 0.0)]
)
def test_tolerance_is_a_percentage(text, expected):
    assert parse_tolerance(text) == pytest.approx(expected)


def test_exceeded_means_strictly_greater():
    assert not is_exceeded(100, 100)
    assert is_exceeded(101, 100)
    assert is_exceeded(float("nan"), 100)


def test_heap_prefix_and_unknown_heap():
    assert size_budget(PEAK, "cuda:2GiB") == Budget(PEAK, "cuda", 2 * 2**30)
    assert size_budget(PEAK, "2GiB") == Budget(PEAK, "host", 2 * 2**30)
    with pytest.raises(BudgetError, match="unknown heap 'gpu'"):
        size_budget(PEAK, "gpu:1MiB")


def test_a_later_option_replaces_an_earlier_one_of_the_same_heap_and_kind():
    budgets = option_budgets({PEAK: ["1MiB", "2MiB", "cuda:3MiB"], LEAK_PER_STACK: ["1KiB"]}, [])
    assert sorted((b.heap, b.kind, b.limit) for b in budgets) == [
        ("cuda", PEAK, 3 * 2**20),
        ("host", LEAK_PER_STACK, 1024),
        ("host", PEAK, 2 * 2**20),
    ]


def write_baseline(path, heap="host", peak=True):
    path.write_text(
        "heap_v2/1\n# mem_profiler 0.1.0\n# exe: /bin/true\n"
        f"# heap: {heap}\n"
        + ("# peak_live_bytes: 1000\n" if peak else "")
        + "  t*: 0: 0 [0: 0]\n\nMAPPED_LIBRARIES:\n"
    )
    return path


BUDGET_FILE = """
[host]
max-peak = "256 MiB"
max-leak-per-stack = 1048576

[cuda]
max-peak = "2 GiB"

[commands.fast]
run = "./fast --quick"
[commands.fast.host]
max-peak = "64MiB"
max-growth-vs = "base/fast.heap"
tolerance = "2%"

[commands.slow]
run = ["./slow", "a b"]

[commands.adhoc.host]
max-total-alloc = "1GB"
"""


@pytest.fixture
def budget_file(tmp_path):
    (tmp_path / "base").mkdir()
    write_baseline(tmp_path / "base" / "fast.heap")
    path = tmp_path / "budget.toml"
    path.write_text(BUDGET_FILE)
    return path


def test_budget_file_per_heap_and_per_named_command(budget_file, tmp_path):
    doc = load_budget_file(budget_file)
    assert set(doc.budgets) == {
        Budget(PEAK, "host", 256 * 2**20),
        Budget(LEAK_PER_STACK, "host", 2**20),
        Budget(PEAK, "cuda", 2 * 2**30),
    }
    fast = doc.commands["fast"]
    assert fast.argv == ["./fast", "--quick"]
    assert set(fast.budgets) == {
        Budget(PEAK, "host", 64 * 2**20),
        Budget(GROWTH, "host", baseline=str(tmp_path / "base/fast.heap"), tolerance=0.02),
    }
    assert doc.commands["slow"].argv == ["./slow", "a b"]
    assert doc.commands["adhoc"].argv is None


def test_planning_runs_every_named_command_with_the_most_specific_budgets(budget_file):
    doc = load_budget_file(budget_file)
    jobs = plan_jobs([], doc, None, [Budget(LEAK_PER_STACK, "host", 1)])
    assert [j.name for j in jobs] == ["fast", "slow"]  # adhoc has no `run`
    fast = {b.key: b for b in jobs[0].budgets}
    assert fast[("host", PEAK)].limit == 64 * 2**20  # its own over the file's
    assert fast[("cuda", PEAK)].limit == 2 * 2**30  # the file's
    assert fast[("host", LEAK_PER_STACK)].limit == 1  # the option's over all
    assert ("host", GROWTH) in fast and ("host", GROWTH) not in {b.key for b in jobs[1].budgets}


def test_planning_a_command_given_after_the_separator(budget_file):
    doc = load_budget_file(budget_file)
    [job] = plan_jobs(["./prog", "x"], doc, "adhoc", [])
    assert job.name == "adhoc" and job.argv == ["./prog", "x"]
    assert ("host", "max-total-alloc") in {b.key for b in job.budgets}
    [job] = plan_jobs(["./bin/prog"], doc, None, [])
    assert job.name == "prog" and len(job.budgets) == 3  # file-wide budgets only


@pytest.mark.parametrize(
    "command, name, use_file, options, message",
    [
        ([], None, False, [Budget(PEAK)], "no command to run: give it after --"),
        (["./p"], None, False, [], "no budget for p"),
        (["./p"], "fast", False, [], "--name picks a command of a budget file"),
        (["./p"], "nope", True, [], r"has no \[commands.nope\] \(it has: fast, slow, adhoc\)"),
        ([], "adhoc", True, [], r"\[commands.adhoc\] has no 'run' key"),
    ],
)
def test_planning_errors(budget_file, command, name, use_file, options, message):
    doc = load_budget_file(budget_file) if use_file else None
    with pytest.raises(BudgetError, match=message):
        plan_jobs(command, doc, name, options)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[host]\nmax-peek = 1\n", r"unknown key 'max-peek' in \[host\]"),
        ("[gpu]\nmax-peak = 1\n", r"unknown table \[gpu\]: expected a heap"),
        ("[host]\nmax-peak = '1 M'\n", r"\[host\]: bad size '1 M'"),
        ("[host]\ntolerance = '5%'\n", r"'tolerance' without 'max-growth-vs'"),
        ("[commands.x]\nrun = 3\n", r"'run' in \[commands.x\] must be a string or a list"),
        ("[commands.x]\nrun = ''\n", r"'run' in \[commands.x\] is empty"),
        ("[commands.x.cuda]\nmax-growth-vs = 'base.heap'\n", r"base.heap is a profile of the host"),
        ("[host]\nmax-growth-vs = 'nopeak.heap'\n", "records no peak"),
        ("[host\n", "is not valid TOML"),
        ("[host]\nmax-category = '1GiB'\n", r"'max-category' must be a table of CATEGORY = SIZE"),
        ("[host.max-category]\n'a b' = '1GiB'\n", r"bad category 'a b'"),
    ],
)
def test_budget_file_errors_name_the_file_and_the_table(tmp_path, text, message):
    write_baseline(tmp_path / "base.heap")
    write_baseline(tmp_path / "nopeak.heap", peak=False)
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(BudgetError, match=message) as err:
        load_budget_file(path)
    assert str(path) in str(err.value)


def test_missing_budget_file(tmp_path):
    with pytest.raises(BudgetError, match="budget file .* does not exist"):
        load_budget_file(tmp_path / "none.toml")


def test_category_budgets_from_options_and_files(tmp_path):
    """max-category: `[HEAP:]CATEGORY=SIZE` on the command line, a table of CATEGORY =
    SIZE in a heap's table of a file; one per heap and category."""
    assert category_option("optimizer_state=1GiB") == Budget(
        CATEGORY, "host", 1 << 30, category="optimizer_state"
    )
    assert (
        category_option("cuda:weights = 2 GiB").describe() == "cuda max-category weights 2.00 GiB"
    )
    with pytest.raises(BudgetError, match=r"expected \[HEAP:\]CATEGORY=SIZE, found 'weights'"):
        category_option("weights")
    path = tmp_path / "b.toml"
    path.write_text("[host.max-category]\nweights = '64MiB'\ngradients = '64MiB'\n")
    budgets = load_budget_file(path).budgets
    assert sorted((b.category, b.limit) for b in budgets) == [
        ("gradients", 64 << 20),
        ("weights", 64 << 20),
    ]
    assert len(merge(budgets, [category_option("weights=1MiB")])) == 2
