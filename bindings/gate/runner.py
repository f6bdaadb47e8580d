"""Run the gate's commands under the sampler (`mem_profiler gate`) and have their
profiles judged (gate/check.py).

Each command runs with every allocation recorded by default (rate 1) and live bytes
tracked, so its peak is exact; only the command's own process is judged (forks and
programs it runs that wrote profiles are counted, not judged).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mem_profiler.control.launch import LaunchError, run_profiled
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.core import progress
from mem_profiler.core.errors import BudgetError, UserError
from mem_profiler.core.file_names import heap_file, heap_stem, log_file, log_files
from mem_profiler.core.input_files import open_regular
from mem_profiler.gate.budgets import GateJob
from mem_profiler.gate.check import CommandVerdict, check_budgets
from mem_profiler.gate.kinds import CATEGORY
from mem_profiler.gate.suppressions import BUILTIN, Suppression
from mem_profiler.parser.common.atomic import atomic_open
from mem_profiler.parser.model.categories import TORCH_RULES, Rule
from mem_profiler.parser.read.heap_file import read_heap


@dataclass
class GateSettings:
    # each command's capture (its prefix and mode are the gate's own); leak_scan: what is
    # live at exit counts only what nothing points to then (run --leak-check); follow_fork:
    # the command's forks write files too (not judged)
    capture: CaptureSettings = field(default_factory=lambda: CaptureSettings(rate=1))
    allow_dropped: bool = False  # judge a profile that dropped samples, as it is
    top: int = 5  # stacks shown per exceeded budget
    save_dir: str | None = None  # keep each command's profiles: DIR/NAME[.HEAP].heap
    suppressions: tuple[Suppression, ...] = BUILTIN  # left out of what is live at exit
    category_rules: tuple[Rule, ...] = TORCH_RULES  # what max-category's stacks are for


def run_gate(jobs: list[GateJob], settings: GateSettings) -> list[CommandVerdict]:
    """Run each job in turn under the sampler and judge it."""
    if settings.save_dir and not os.path.isdir(settings.save_dir):
        raise BudgetError(
            f"folder {settings.save_dir} does not exist: create it or change --save-profiles"
        )
    return [_run_job(job, settings) for job in jobs]


def _run_job(job: GateJob, settings: GateSettings) -> CommandVerdict:
    verdict = CommandVerdict(
        job.name,
        job.argv,
        job.budgets,
        time.strftime("%Y-%m-%dT%H:%M:%S"),
        0.0,
        settings.capture.rate,
    )
    clock = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mem_profiler_gate_") as folder:
        prefix = folder + "/"
        capture = dataclasses.replace(
            settings.capture,
            prefix=prefix,
            capture=True,
            # a category's peak is replayed from the event log
            log=any(b.kind == CATEGORY for b in job.budgets),
        )
        progress.clear()  # the command's own output has the terminal while it runs
        try:
            run = run_profiled(job.argv, capture)
        except LaunchError as e:
            verdict.problem = str(e)
            return verdict
        verdict.seconds = time.monotonic() - clock
        verdict.pid, verdict.exit_code = run.pid, run.exit_code
        written = run.files_by_process()
        own = written.pop(run.pid, {})
        verdict.other_processes = len(written)
        if not own:
            verdict.problem = (
                f"{job.argv[0]} wrote no profile: it was killed or ended "
                "without running exit handlers"
            )
            return verdict
        try:
            progress.stage(f"reading {job.name}'s profile")
            profiles = {heap: read_heap(path) for heap, path in own.items()}
            progress.stage(f"judging {job.name}")
            verdict.results = check_budgets(
                job.budgets,
                profiles,
                settings.top,
                settings.allow_dropped,
                own,
                settings.suppressions,
                settings.category_rules,
            )
        except UserError as e:
            verdict.problem = str(e)
        if settings.save_dir:  # judged or not: what could not be judged is worth a look
            try:
                save_profiles(own, settings.save_dir, job.name)
            except UserError as e:
                verdict.problem = verdict.problem or str(e)
    if run.exit_code != 0 and verdict.problem is None:
        verdict.problem = f"{job.argv[0]} exited with status {run.exit_code}"
    return verdict


def save_profiles(files: Mapping[str, Path], folder: str, name: str) -> None:
    """Copy a command's files to FOLDER/NAME.heap and FOLDER/NAME.HEAP.heap (device
    heaps), e.g. as baselines for max-growth-vs, and its event log, if it has one, to
    FOLDER/NAME.K.memlog, where the parser finds it for NAME.heap (an earlier save's log
    files of NAME removed, as its .heap files are replaced)."""
    stem = str(Path(folder) / re.sub(r"[^\w.-]", "_", name))
    window = heap_stem(str(next(iter(files.values()))))
    copies = {heap_file(stem, heap): path for heap, path in files.items()}
    copies.update({log_file(stem, k): Path(path) for k, path in log_files(window).items()})
    target = stem
    try:
        for target in log_files(stem).values():
            os.unlink(target)
        for target, path in copies.items():
            with (
                open_regular(str(path), "a capture's file", BudgetError) as src,
                atomic_open(target, "wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
    except OSError as e:
        raise BudgetError(f"cannot write {target}: {e.strerror}") from None
