"""Log mode on a Python program (issue 14): `mem_profiler run --mode log` of
tests/fixtures/python_steps.py, which marks its steps with mem_profiler.mark; `--peak`
and `--mark-leaks` name its own functions, with the bytes tracemalloc counts for them
(a run of its own)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from unittest import mock

import numpy as np
import pytest
from support.profiling import one_heap, profile_run
from support.python_steps import STEPS_SCRIPT, steps_truth
from support.sampling_math import assert_estimate

from mem_profiler.cmd.mem_parser import main
from mem_profiler.core.escape import xml_text
from mem_profiler.core.units import format_amount
from mem_profiler.parser import log_pipeline
from mem_profiler.parser.log import analysis
from mem_profiler.parser.log.analysis import open_window_log, replay_groups
from mem_profiler.parser.log_pipeline import allocation_functions, allocation_groups
from mem_profiler.parser.model.categories import read_rules
from mem_profiler.parser.report.request import Request

RATE = 1024
LIMIT = 0.10  # the bound per function at -c 1024


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """(truth, .heap) of one log-mode run in the tests' own interpreter, which has
    mem_profiler to import."""
    folder = tmp_path_factory.mktemp("log_python")
    truth = steps_truth(sys.executable, folder)
    proc, files = profile_run(
        [sys.executable, STEPS_SCRIPT, "--marks"], folder / "l_", RATE, "--mode", "log"
    )
    return truth, one_heap(proc, files)


def parser_json(capsys, *args: object) -> dict:
    main([str(a) for a in args] + ["--json"])
    return json.loads(capsys.readouterr().out)


def test_peak_names_the_scripts_functions(steps, capsys):
    """The peak is the last spike, live with every step's leak; the table says nothing of
    the .heap file's moment (the interpreter's finalizing), which is not the peak's."""
    truth, heap = steps
    main(["-f", str(heap), "-t"])
    text = capsys.readouterr().out
    assert "Taken as the Python interpreter began to finalize" in text
    # the peak's stacks are in the log, not the file: its line names none
    (peak,) = [line for line in text.splitlines() if line.startswith("Peak: ")]
    assert peak.endswith(" (mem_parser --peak: its table)") and "most in" not in peak, peak
    main(["-f", str(heap), "--peak", "-t"])
    text = capsys.readouterr().out
    assert truth.frame("spike") in text and truth.frame("step_leak") in text
    assert "Taken as the Python interpreter" not in text
    cum = {row["name"]: row["cum"] for row in parser_json(capsys, "-f", heap, "--peak")["rows"]}
    spike, spike_sd = truth.estimate_sd("spike", RATE)
    assert_estimate(cum[truth.frame("spike")], spike, spike_sd, LIMIT)
    leak, leak_sd = truth.estimate_sd("step_leak", RATE, truth.steps)
    assert_estimate(cum[truth.frame("step_leak")], leak, leak_sd, LIMIT)


@pytest.mark.parametrize("step", [0, 1, 2])
def test_mark_leaks_of_each_step_are_step_leaks(steps, capsys, step):
    """What a step kept is one stack, step_leak's: the object and buffer of each
    bytearray come from two native paths beneath one Python line, shown as one."""
    truth, heap = steps
    args = ["-f", heap, "--mark-leaks", "step start", "--start-index", step]
    main([str(a) for a in args])
    text = capsys.readouterr().out
    first = text.split("\n#1 ", 1)[1].split("\n#2 ", 1)[0]
    assert truth.frame("step_leak") in first and "main (python_steps.py)" in first, text
    leaks = parser_json(capsys, *args)["leaks"]
    mine = [leak for leak in leaks if truth.frame("step_leak") in leak["stack"]]
    assert len(mine) == 1 and mine[0] is leaks[0], leaks
    leak, leak_sd = truth.estimate_sd("step_leak", RATE)
    assert_estimate(mine[0]["bytes"], leak, leak_sd, LIMIT)
    # the spike, freed within the step, is no leak
    assert not any(truth.frame("spike") in leak["stack"] for leak in leaks)


def test_the_timeline_stacks_the_categories(steps, tmp_path, capsys):
    """--timeline with --category-rules draws each category's live bytes as an area;
    the bytes replayed for each category are, at every mark, what --at that moment
    reports for it (the live blocks' profile, read another way)."""
    _, heap = steps
    rules = tmp_path / "rules.txt"
    rules.write_text("spikes python_steps\\.py$ spike\nleaks python_steps\\.py$ step_leak\n")
    svg = tmp_path / "t.svg"
    main(["-f", str(heap), "--timeline", str(svg), "--category-rules", str(rules)])
    drawn = svg.read_text()
    for name in ("leaks", "spikes", "other"):
        assert f"<title>{name}</title></polygon>" in drawn
    cap = open_window_log(heap)
    request = Request(categories=read_rules(str(rules)))
    names, group = allocation_groups(cap, request)
    times, values = replay_groups(cap, group, len(names))
    assert len(cap.log.marks) >= 3
    for mark in cap.log.marks:
        at = int(np.searchsorted(times, mark.time_ns, side="right")) - 1
        reported = parser_json(
            capsys, "-f", heap, "--at", mark.time_ns / 1e6, "--category-rules", rules
        )
        rows = {row["name"]: row["flat"] for row in reported["rows"]}
        for g, name in enumerate(names):
            # the replay adds each block's estimate rounded to a byte, --at adds them whole
            assert values[g, at] == pytest.approx(rows.get(name, 0.0), rel=1e-3, abs=64), name


def test_the_timeline_categories_are_those_of_every_stack_in_batches(steps, tmp_path):
    """The stacks are merged by function from the log's tree and expanded a batch at a
    time (analysis.batches), bounded in stacks and in frames; where the tree cannot be
    merged, expanded from the log a batch at a time (analysis.stack_batches), the
    frames counted without expanding them: in three batches or more of either, each
    allocation's category is the one of a single batch."""
    _, heap = steps
    rules = tmp_path / "rules.txt"
    rules.write_text("spikes python_steps\\.py$ spike\nleaks python_steps\\.py$ step_leak\n")
    cap = open_window_log(heap)
    request = Request(categories=read_rules(str(rules)))
    with mock.patch.object(log_pipeline, "mergeable", return_value=False):
        names, group = allocation_groups(cap, request)  # each stack expanded as the log has it
    assert allocation_groups(cap, request)[1].tolist() == group.tolist()
    ids = np.unique(cap.allocs.stack).tolist()
    lengths = cap.log.stacks.lengths_of(ids)
    assert (lengths == np.diff(cap.log.stacks.frames_of(ids)[1])).all()
    every_batch = analysis.batches
    counts: list[int] = []

    def counted(lengths: np.ndarray) -> Iterator[tuple[int, int]]:
        parts = list(every_batch(lengths))
        counts.append(len(parts))
        return iter(parts)

    for merged in (True, False):
        for bound, size in (
            ("STACKS_AT_ONCE", len(ids) // 6 + 1),
            ("FRAMES_AT_ONCE", lengths.sum() // 6),
        ):
            counts.clear()
            with (
                mock.patch.object(analysis, bound, int(size)),
                mock.patch.object(analysis, "batches", counted),
                mock.patch.object(log_pipeline, "mergeable", return_value=merged),
            ):
                in_batches = allocation_groups(cap, request)
            assert counts and counts[-1] >= 3, (merged, bound, counts)
            assert in_batches[0] == names and (in_batches[1] == group).all()
    assert len(set(group.tolist())) == len(names) == 3


def test_the_timeline_of_the_stacks_focus_keeps(steps, tmp_path):
    """--timeline with --focus draws the live bytes of the stacks it keeps as an area under
    the heap's line: at each step's mark, the leaks of the steps before it as tracemalloc
    counts them; its peak, in the notes, all the steps' leaks. --ignore of the same
    pattern draws the rest: the two add up to the heap's line at every event. With
    categories, only the kept stacks are in them."""
    truth, heap = steps
    cap = open_window_log(heap)
    focus = re.compile("step_leak")
    names, kept = allocation_groups(cap, Request(focus=focus))
    assert names == ["--focus step_leak"]
    times, values = replay_groups(cap, kept, 1)
    assert len(cap.log.marks) == truth.steps + 1
    for k, mark in enumerate(cap.log.marks):
        at = int(np.searchsorted(times, mark.time_ns, side="right")) - 1
        if k == 0:
            assert values[0, at] == 0
        else:
            leaks, sd = truth.estimate_sd("step_leak", RATE, k)
            assert_estimate(values[0, at], leaks, sd, LIMIT)
    leaks, sd = truth.estimate_sd("step_leak", RATE, truth.steps)
    assert_estimate(values[0].max(), leaks, sd, LIMIT)
    _, rest = allocation_groups(cap, Request(ignore=focus))
    assert ((kept == 0) ^ (rest == 0))[cap.allocs.heap == cap.heap].all()
    every, whole = replay_groups(cap, np.where(cap.allocs.heap == cap.heap, 0, -1), 1)
    rest_times, others = replay_groups(cap, rest, 1)

    def then(t: np.ndarray, v: np.ndarray) -> np.ndarray:
        """A replay's values at each of the whole heap's times."""
        return v[0, np.searchsorted(t, every, side="right") - 1]

    assert then(times, values) + then(rest_times, others) == pytest.approx(whole[0], abs=1)
    assert 0 < values[0, -1] < whole[0, -1]

    svg = tmp_path / "focus.svg"
    main(["-f", str(heap), "--timeline", str(svg), "--focus", "step_leak"])
    drawn = svg.read_text()
    assert "<title>--focus step_leak</title></polygon>" in drawn
    peak_at = int(np.argmax(values[0]))
    assert (
        "areas: the stacks --focus step_leak keeps, live; their peak"
        f" {format_amount(values[0, peak_at], 'bytes')} at {times[peak_at] / 1e6:.1f} ms"
    ) in drawn
    main(["-f", str(heap), "--timeline", str(svg), "--focus", "no_such_function"])
    assert "areas: the stacks --focus no_such_function keeps, live: none at any time" in (
        svg.read_text()
    )

    rules = tmp_path / "rules.txt"
    rules.write_text("spikes python_steps\\.py$ spike\nleaks python_steps\\.py$ step_leak\n")
    names, group = allocation_groups(cap, Request(categories=read_rules(str(rules)), focus=focus))
    assert (group[kept == 0] == names.index("leaks")).all() and (group[kept != 0] == -1).all()


def test_the_timeline_of_the_functions_that_held_the_peak(steps, tmp_path):
    """--timeline-top 2: the two functions that allocated most of the heap's peak, the last
    spike and the steps' leaks, each an area whose bytes are tracemalloc's count of its
    blocks live then (at each step's mark, the leaks of the steps before it); the rest is
    other, and the areas add up to the heap's line at every event."""
    truth, heap = steps
    cap = open_window_log(heap)
    names, group = allocation_functions(cap, Request(), 2)
    assert [name.split(".")[0].split(" ")[0] for name in names] == ["spike", "step_leak", "other"]
    assert all(name.endswith(" (python_steps.py)") for name in names[:2]), names
    times, values = replay_groups(cap, group, 3)
    for k, mark in enumerate(cap.log.marks[1:], 1):
        at = int(np.searchsorted(times, mark.time_ns, side="right")) - 1
        leaks, sd = truth.estimate_sd("step_leak", RATE, k)
        assert_estimate(values[1, at], leaks, sd, LIMIT)
    peak = int(np.argmax(values.sum(axis=0)))
    spike, sd = truth.estimate_sd("spike", RATE)
    assert_estimate(values[0, peak], spike, sd, LIMIT)
    every, whole = replay_groups(cap, np.where(cap.allocs.heap == cap.heap, 0, -1), 1)
    assert (times == every).all() and values.sum(axis=0) == pytest.approx(whole[0], abs=1)

    svg = tmp_path / "top.svg"
    main(["-f", str(heap), "--timeline", str(svg), "--timeline-top", "2"])
    drawn = svg.read_text()
    for name in names:
        assert f"<title>{xml_text(name)}</title></polygon>" in drawn
    assert "areas: the 2 functions that allocated most of the heap's peak, live; their peak" in (
        drawn
    )


def test_a_rule_that_backtracks_without_end_is_stopped_and_named(steps, tmp_path, capsys):
    """A user's expression that would backtrack for longer than the universe on a file
    name of the profile ends the report in one sentence naming its line, within the bound
    per name; the rules before it are fine."""
    _, heap = steps
    rules = tmp_path / "rules.txt"
    rules.write_text("spikes python_steps\\.py$ spike\nslow ^((?:[/\\w.])+?)+?[^y]$ .*\n")
    with pytest.raises(SystemExit) as ended:
        main(["-f", str(heap), "-t", "--category-rules", str(rules)])
    assert ended.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(
        f"mem_parser: {rules}:2: the expression '^((?:[/\\w.])+?)+?[^y]$' took more than 50 ms "
        "on a name of "
    ), err
    assert err.endswith("backtracks without end: write it with one")
