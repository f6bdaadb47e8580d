"""Step compare (--compare-steps N M) on real runs of tests/fixtures/log_steps.c at -c 1,
whose third step alone keeps step_leak's 2048 blocks of 4 KiB: it is found as exactly
that stack, against any other step, by step records and by the occurrences of a mark."""

from __future__ import annotations

import json
import subprocess

import pytest
from support.paths import MEM_PARSER
from support.profiling import profile_run, run_parser

from mem_profiler.parser.msmemscope import analyzers

LEAK = 2048 * 4096  # step_leak, in the third step only (leak3)


@pytest.fixture(scope="module")
def runs(log_steps_exe, tmp_path_factory):
    """{marker: .heap} of `log_steps MARKER leak3` with every allocation logged."""
    out = tmp_path_factory.mktemp("compare")
    heaps = {}
    for marker in ("step", "mstx"):
        proc, files = profile_run(
            [log_steps_exe, marker, "leak3"], out / f"{marker}_", 1, "--mode", "log"
        )
        assert proc.returncode == 0 and len(files) == 1, proc.stderr
        heaps[marker] = files[0]
    return log_steps_exe, heaps


def flat_bytes(exe, heap, *args: str) -> tuple[dict[str, float], str]:
    """{function: flat bytes} of the --json report of a step compare, and the stderr."""
    proc = run_parser("-p", exe, "-f", heap, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    return {row["name"]: row["flat"] for row in report["rows"] if row["flat"]}, proc.stderr


def test_the_step_that_kept_more_names_the_leak(runs):
    exe, heaps = runs
    flat, said = flat_bytes(exe, heaps["step"], "--compare-steps", "3", "2")
    assert flat == {"step_leak": LEAK}
    assert "Kept by step 3 (" in said and "less kept by step 2 (" in said
    assert flat_bytes(exe, heaps["step"], "--compare-steps", "2", "3")[0] == {"step_leak": -LEAK}
    assert flat_bytes(exe, heaps["step"], "--compare-steps", "4", "2")[0] == {}
    # what each allocated: the leak's blocks, the rest the same in both steps
    flat, _ = flat_bytes(exe, heaps["step"], "--compare-steps", "3", "1", "--alloc_space")
    assert flat == {"step_leak": LEAK}


def test_steps_counted_by_a_mark(runs):
    exe, heaps = runs
    flat, said = flat_bytes(
        exe, heaps["mstx"], "--compare-steps", "2", "0", "--step-mark", "step start"
    )
    assert flat == {"step_leak": LEAK}
    assert "Kept by 'step start' #2 (" in said


def refused(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MEM_PARSER, *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args, sentence",
    [
        (["--compare-steps", "9", "1"], "no step 9 in the log: its steps are 1-5."),
        (
            ["--compare-steps", "1", "2", "--step-mark", "nothing"],
            "no mark 'nothing' in the log;",
        ),
        (["--step-mark", "step start", "-t"], "--step-mark goes with --compare-steps N M."),
        (
            ["--compare-steps", "3", "2", "--jeprof", "x"],
            "--jeprof writes one profile's samples",
        ),
    ],
)
def test_step_compare_refusals(runs, args, sentence):
    exe, heaps = runs
    proc = refused("-p", exe, "-f", heaps["step"], *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"mem_parser: {sentence}"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_a_log_without_step_records_says_how_to_count_steps(runs):
    exe, heaps = runs
    proc = refused("-p", exe, "-f", heaps["mstx"], "--compare-steps", "3", "2")
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "mem_parser: the log has no steps (memprof_step(), mem_profiler.step()): count them"
        " by a mark with --step-mark TEXT; its marks are 'step start'."
    ), proc.stderr


def test_the_api_compares_steps_as_mem_parser_does(runs, capsys):
    exe, heaps = runs
    table = analyzers.analyze("compare", input_path=heaps["step"], step=3, base_step=2)
    flat = {
        name: value for name, value in zip(table.names, table.flat.tolist(), strict=True) if value
    }
    assert flat == {"step_leak": LEAK}
    printed = capsys.readouterr().out
    assert printed == run_parser("-p", exe, "-f", heaps["step"], "--compare-steps", "3", "2").stdout
