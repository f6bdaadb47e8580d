"""`mem_profiler gate`: run a command under the sampler and fail when a memory budget is
exceeded (exit 1), for CI; 2 when the command could not be run or judged. Also `mem_profiler
run --leak-check`, the gate with one budget."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import TYPE_CHECKING

import click

from mem_profiler.cmd.cli_input import Command, capture_options, fail
from mem_profiler.control.launch import LaunchError
from mem_profiler.control.sampler_lib import SamplerNotBuilt
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.core import progress
from mem_profiler.core.errors import UserError
from mem_profiler.core.file_names import absolute_prefix
from mem_profiler.gate.kinds import SIZE_KINDS

if TYPE_CHECKING:
    from mem_profiler.gate.suppressions import Suppression

SIZE_HELP = {
    "max-peak": "Most bytes live at once.",
    "max-live-at-exit": "Bytes still allocated when the command exits.",
    "max-leak-per-stack": "Bytes still allocated at exit from any one call stack.",
    "max-total-alloc": "All bytes allocated, freed or not.",
}


def size_options(command: Command) -> Command:
    for kind in reversed(SIZE_KINDS):
        command = click.option(
            f"--{kind}",
            kind.replace("-", "_"),
            multiple=True,
            metavar="[HEAP:]SIZE",
            help=SIZE_HELP[kind],
        )(command)
    return command


SUPPRESSIONS_HELP = (
    "Rules of what is not a leak, one a line, as LeakSanitizer's: leak:PATTERN (docs/gates.md);"
    " what is live at exit leaves out their stacks besides the built-in ones (stdio's"
    " buffers, the locale, the loader, Python's interpreter and modules)."
)


@click.command(context_settings={"allow_interspersed_args": False})
@size_options
@click.option(
    "--max-growth-vs",
    "baselines",
    multiple=True,
    metavar="BASELINE.heap",
    help="A profile saved with --save-profiles: fail if the peak of its heap grew "
    "by more than --tolerance.",
)
@click.option(
    "--max-category",
    "categories",
    multiple=True,
    metavar="[HEAP:]CATEGORY=SIZE",
    help="Most bytes of one category live at once: weights, gradients, optimizer_state,"
    " activations or other, by each stack's Python frames (docs/reports.md); the command"
    " runs in log mode.",
)
@click.option(
    "--category-rules",
    metavar="FILE",
    help="--max-category by the rules in FILE, one a line: CATEGORY FILE_REGEX"
    " FUNCTION_REGEX, as mem_parser's (docs/reports.md), instead of PyTorch's.",
)
@click.option(
    "--tolerance",
    default="5%",
    show_default=True,
    metavar="PERCENT",
    help="Growth allowed against a --max-growth-vs baseline, in percent.",
)
@click.option(
    "--budget",
    "budget_path",
    metavar="FILE.toml",
    help="Budgets per heap and per named command (see docs/gates.md).",
)
@click.option(
    "--name",
    metavar="NAME",
    help="Run only [commands.NAME] of the budget file "
    "(with a command after --: judge it by NAME's budgets).",
)
@capture_options(
    1,
    "Mean bytes between samples; 1 records every allocation (exact), more "
    "gives estimates with their expected error.",
)
@click.option(
    "--allow-dropped",
    is_flag=True,
    help="Judge a profile that dropped samples (its tables were full), whose every "
    "measure is then too low, instead of refusing it.",
)
@click.option(
    "--top",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="Stacks shown per exceeded budget.",
)
@click.option("--json", "json_path", metavar="FILE", help="Write the results as JSON.")
@click.option("--junit", "junit_path", metavar="FILE", help="Write the results as JUnit XML.")
@click.option(
    "--save-profiles",
    metavar="DIR",
    help="Keep each command's profiles as DIR/NAME.heap (and DIR/NAME.HEAP.heap).",
)
@click.option(
    "--follow-fork",
    is_flag=True,
    help="Also profile the children a command forks (counted, not judged).",
)
@click.option("--suppressions", metavar="FILE", help=SUPPRESSIONS_HELP)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def gate(
    command: tuple[str, ...],
    baselines: tuple[str, ...],
    categories: tuple[str, ...],
    category_rules: str | None,
    tolerance: str,
    budget_path: str | None,
    name: str | None,
    rate: int,
    device_rate: int,
    depth: int,
    stack_memory: int,
    allow_dropped: bool,
    top: int,
    json_path: str | None,
    junit_path: str | None,
    save_profiles: str | None,
    follow_fork: bool,
    suppressions: str | None,
    **sizes: tuple[str, ...],
) -> None:
    """Run COMMAND under the sampler; exit 0 when every memory budget holds, 1 when one is
    exceeded (the report on stderr names it and the stacks responsible), 2 when the
    command cannot be run or judged.

    A budget is [HEAP:]SIZE (repeatable): HEAP is host (the default), cuda, cuda_host, acl,
    acl_host, hal or cuda_segments; SIZE is bytes, or with a unit: KiB, MiB, GiB (binary),
    KB, MB, GB (decimal). Exceeded means strictly greater.

    \b
    mem_profiler gate --max-peak 256MiB --max-leak-per-stack 1MiB -- ./unit_tests
    mem_profiler gate --max-peak cuda:2GiB --max-growth-vs base/train.heap -- ./train
    mem_profiler gate --budget budget.toml --junit memory.xml
    """
    # Imported here: they bring numpy and the symbolizer, which the other mem_profiler
    # commands (a capture that must attach quickly) do not need.
    from mem_profiler.gate.budgets import load_budget_file, option_budgets, plan_jobs
    from mem_profiler.gate.check import gate_status
    from mem_profiler.gate.report import format_verdicts, write_json, write_junit
    from mem_profiler.gate.runner import GateSettings, run_gate
    from mem_profiler.parser.model.categories import TORCH_RULES, read_rules

    try:
        by_kind = {kind: sizes[kind.replace("-", "_")] for kind in SIZE_KINDS}
        budget_file = load_budget_file(budget_path) if budget_path else None
        jobs = plan_jobs(
            list(command),
            budget_file,
            name,
            option_budgets(by_kind, baselines, tolerance, categories),
        )
        capture = CaptureSettings(
            rate=rate,
            device_rate=device_rate,
            depth=depth,
            stack_memory=stack_memory,
            follow_fork=follow_fork,
        )
        settings = GateSettings(
            capture,
            allow_dropped=allow_dropped,
            top=top,
            save_dir=save_profiles,
            suppressions=leak_suppressions(suppressions),
            category_rules=read_rules(category_rules) if category_rules else TORCH_RULES,
        )
        with progress.shown("mem_profiler gate"):
            verdicts = run_gate(jobs, settings)
        click.echo(format_verdicts(verdicts), err=True, nl=False)
        if json_path:
            write_json(json_path, verdicts)
        if junit_path:
            write_junit(junit_path, verdicts)
    except (UserError, LaunchError, SamplerNotBuilt) as err:
        fail("mem_profiler gate", str(err))
    sys.exit(gate_status(verdicts))


def leak_suppressions(path: str | None) -> tuple[Suppression, ...]:
    """The built-in rules, and those of the file at `path`."""
    from mem_profiler.gate.suppressions import BUILTIN, read_suppressions

    return BUILTIN + (read_suppressions(path) if path else ())


def check_leaks_at_exit(
    command: list[str], threshold: str, suppressions: str | None, capture: CaptureSettings
) -> None:
    """run --leak-check: the gate with one budget, what is live at exit, the command
    captured as `capture` says; the profile is kept as <prefix>leak-check.heap. Exits
    with the command's status, else 1 when the budget is exceeded or could not be
    judged, else 0."""
    from mem_profiler.gate.budgets import GateJob, size_budget
    from mem_profiler.gate.kinds import LIVE_AT_EXIT
    from mem_profiler.gate.report import format_verdicts
    from mem_profiler.gate.runner import GateSettings, run_gate  # numpy, as in gate

    folder, name = os.path.split(absolute_prefix(capture.prefix))
    try:
        job = GateJob(f"{name}leak-check", command, [size_budget(LIVE_AT_EXIT, threshold)])
        settings = GateSettings(
            dataclasses.replace(capture, leak_scan=True),
            save_dir=folder,
            suppressions=leak_suppressions(suppressions),
        )
        with progress.shown("mem_profiler"):
            (verdict,) = run_gate([job], settings)
    except (UserError, LaunchError, SamplerNotBuilt) as err:
        fail("mem_profiler", str(err))  # a refusal of `mem_profiler run`
    click.echo(format_verdicts([verdict]), err=True, nl=False)
    if verdict.exit_code:
        sys.exit(verdict.exit_code)
    sys.exit(1 if verdict.exceeded or verdict.problem else 0)
