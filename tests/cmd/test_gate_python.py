"""`mem_profiler gate` on a Python program (issue 14): tests/fixtures/python_steps.py,
in exact mode; the budgets it exceeds name its own functions, in the text report and in
--json, with the bytes tracemalloc counts for them (a run of its own)."""

from __future__ import annotations

import json

import pytest
from support.interpreters import VENV_PYTHON, debian, interpreter
from support.profiling import gate
from support.python_steps import STEPS_SCRIPT, steps_truth
from support.sampling_math import assert_estimate

LIMIT = 0.05  # the bound per function at -c 1


@pytest.fixture(scope="module", params=[interpreter("venv", VENV_PYTHON), debian()])
def judged(request, tmp_path_factory):
    """(truth, the gate's stderr, its --json) of one run over every host budget, under
    the tests' own interpreter and under Debian's python3.11 as Debian ships it (the
    script imports nothing of ours without --marks)."""
    python = request.param
    folder = tmp_path_factory.mktemp("gate_python")
    truth = steps_truth(python, folder)
    out = folder / "gate.json"
    proc = gate(
        "--max-peak",
        "1MiB",
        "--max-total-alloc",
        "1MiB",
        "--max-live-at-exit",
        "1GiB",
        "--json",
        out,
        "--",
        python,
        STEPS_SCRIPT,
    )
    assert proc.returncode == 1, proc.stderr
    (command,) = json.loads(out.read_text())["commands"]
    return truth, proc.stderr, {r["budget"]["kind"]: r for r in command["results"]}


def site_bytes(result: dict, frame: str) -> float:
    return sum(stack["bytes"] for stack in result["stacks"] if frame in stack["frames"])


def test_total_alloc_names_the_scripts_functions(judged):
    truth, text, results = judged
    total = results["max-total-alloc"]
    assert total["exceeded"]
    for site in ("spike", "step_leak"):
        expected, rel_sd = truth.estimate_sd(site, 1, truth.steps)
        assert_estimate(site_bytes(total, truth.frame(site, lines=True)), expected, rel_sd, LIMIT)
    shown = text.split("FAIL host max-total-alloc", 1)[1].splitlines()[2]
    assert truth.frame("spike", lines=True) in shown and "main (python_steps.py:" in shown, text


def test_peak_holds_the_last_spike_and_every_steps_leak(judged):
    truth, text, results = judged
    peak = results["max-peak"]
    assert peak["exceeded"]
    live = truth.estimate_sd("spike", 1)[0] + truth.estimate_sd("step_leak", 1, truth.steps)[0]
    assert peak["measured"] >= live
    assert (
        truth.frame("spike", lines=True) in text.split("FAIL host max-peak", 1)[1].splitlines()[2]
    )


def test_live_at_exit_is_what_the_script_kept(judged):
    """What the script still holds at its end (every step's leak, in a module global) is
    live at exit, taken as the interpreter begins to finalize, before it frees it; what
    the interpreter and the modules it imported keep is left out, and said to be
    (docs/gates.md, "Python programs")."""
    truth, _, results = judged
    at_exit = results["max-live-at-exit"]
    kept = truth.estimate_sd("step_leak", 1, truth.steps)[0]
    assert kept <= at_exit["measured"] <= kept * (1 + LIMIT), (at_exit["measured"], kept)
    assert any("Python's interpreter and modules" in note for note in at_exit["notes"])


def test_growth_names_the_scripts_functions(tmp_path):
    """Against the baseline of an empty program, what grew most is spike's allocations:
    one stack (the native paths under its line are one, as the reports show them), named
    by the script's frames with their lines, with spike's bytes."""
    truth = steps_truth(VENV_PYTHON, tmp_path)
    saved = gate("--max-peak", "1GiB", "--save-profiles", tmp_path, "--", VENV_PYTHON, "-c", "0")
    assert saved.returncode == 0, saved.stderr
    (baseline,) = tmp_path.glob("*.heap")
    out = tmp_path / "gate.json"
    proc = gate("--max-growth-vs", baseline, "--json", out, "--", VENV_PYTHON, STEPS_SCRIPT)
    assert proc.returncode == 1, proc.stderr
    ((grown,),) = (command["results"] for command in json.loads(out.read_text())["commands"])
    first = grown["stacks"][0]
    assert truth.frame("spike", lines=True) in first["frames"], proc.stderr
    expected, rel_sd = truth.estimate_sd("spike", 1, truth.steps)
    assert_estimate(first["bytes"], expected, rel_sd, LIMIT)
    spikes = [s for s in grown["stacks"] if any(f.startswith("spike (") for f in s["frames"])]
    assert len(spikes) == 1, proc.stderr
