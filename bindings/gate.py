"""Run commands under the sampler and judge their memory budgets (`mem_profiler gate`).

Each command runs with every allocation recorded by default (rate 1) and live bytes
tracked, so its peak is exact; only the command's own process is judged (forks and
programs it runs that wrote profiles are counted, not judged).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mem_profiler import defaults
from mem_profiler.launch import CaptureSettings, LaunchError, run_profiled
from mem_profiler.parser.atomic import atomic_open
from mem_profiler.parser.budget_check import BudgetResult, check_budgets
from mem_profiler.parser.budgets import Budget, BudgetError, BudgetFile, merge
from mem_profiler.parser.errors import UserError
from mem_profiler.parser.file_names import heap_file, heap_file_pattern
from mem_profiler.parser.heapfile import read_heap

# Exit statuses of the gate.
HOLD, EXCEEDED, SETUP_ERROR = 0, 1, 2


@dataclass
class GateJob:
    """A command and the budgets it is judged by."""

    name: str
    argv: list[str]
    budgets: list[Budget]


@dataclass
class GateSettings:
    rate: int = 1
    device_rate: int = defaults.DEVICE_RATE
    depth: int = defaults.DEPTH
    top: int = 5                        # stacks shown per exceeded budget
    save_dir: str | None = None         # keep each command's profiles: DIR/NAME[.HEAP].heap


@dataclass
class CommandVerdict:
    """The judgement of one command: a result per budget, or the problem that kept the
    command from being judged (then `results` may be empty)."""

    name: str
    argv: list[str]
    budgets: list[Budget]
    started: str                        # local time, ISO 8601 without a zone
    seconds: float
    rate: int
    pid: int | None = None
    exit_code: int | None = None
    other_processes: int = 0
    results: list[BudgetResult] = field(default_factory=list)
    problem: str | None = None

    @property
    def exceeded(self) -> list[BudgetResult]:
        return [r for r in self.results if r.exceeded]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> CommandVerdict:
        fields = dict(data)
        budgets = [Budget(**b) for b in fields.pop("budgets")]
        results = [BudgetResult.from_dict(r) for r in fields.pop("results")]
        return cls(budgets=budgets, results=results, **fields)


def plan_jobs(command: list[str], budget_file: BudgetFile | None, name: str | None,
              option_budgets: list[Budget]) -> list[GateJob]:
    """The commands to run: `command` (judged by the file-wide budgets, or by NAME's with
    `name`), else the budget file's named commands (only NAME with `name`). Budgets from
    options replace the file's of the same heap and kind. BudgetError says what is missing."""
    file_wide = budget_file.budgets if budget_file else []
    if name is not None:
        if budget_file is None:
            raise BudgetError("--name picks a command of a budget file: give --budget FILE too")
        if name not in budget_file.commands:
            known = ", ".join(budget_file.commands) or "none"
            raise BudgetError(f"{budget_file.path} has no [commands.{name}] (it has: {known})")
        named = [budget_file.commands[name]]
    elif budget_file is not None and not command:
        named = [c for c in budget_file.commands.values() if c.argv]
        if not named:
            raise BudgetError(f"{budget_file.path} has no command with a 'run' key: "
                              "give the command after --")
    else:
        named = []
    if named:
        jobs = [GateJob(c.name, command or c.argv or [],
                        merge(file_wide, c.budgets, option_budgets)) for c in named]
    elif command:
        jobs = [GateJob(os.path.basename(command[0]), command, merge(file_wide, option_budgets))]
    else:
        raise BudgetError("no command to run: give it after --, e.g. "
                          "mem_profiler gate --max-peak 256MiB -- ./tests")
    for job in jobs:
        if not job.argv:
            raise BudgetError(f"[commands.{job.name}] has no 'run' key: give the command "
                              "after --")
        if not job.budgets:
            raise BudgetError(f"no budget for {job.name}: give --max-peak, --max-leak-per-stack"
                              "... or a budget file")
    return jobs


def run_gate(jobs: list[GateJob], settings: GateSettings) -> list[CommandVerdict]:
    """Run each job in turn under the sampler and judge it."""
    if settings.save_dir and not os.path.isdir(settings.save_dir):
        raise BudgetError(f"folder {settings.save_dir} does not exist: create it or change "
                          "--save-profiles")
    return [_run_job(job, settings) for job in jobs]


def gate_status(verdicts: list[CommandVerdict]) -> int:
    """SETUP_ERROR if a command could not be judged, else EXCEEDED if a budget was,
    else HOLD."""
    if any(v.problem for v in verdicts):
        return SETUP_ERROR
    return EXCEEDED if any(v.exceeded for v in verdicts) else HOLD


def _run_job(job: GateJob, settings: GateSettings) -> CommandVerdict:
    verdict = CommandVerdict(job.name, job.argv, job.budgets,
                             time.strftime("%Y-%m-%dT%H:%M:%S"), 0.0, settings.rate)
    clock = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mem_profiler_gate_") as folder:
        prefix = folder + "/"
        capture = CaptureSettings(rate=settings.rate, device_rate=settings.device_rate,
                                  depth=settings.depth, prefix=prefix, track_live=True)
        try:
            run = run_profiled(job.argv, capture)
        except LaunchError as e:
            verdict.problem = str(e)
            return verdict
        verdict.seconds = time.monotonic() - clock
        verdict.pid, verdict.exit_code = run.pid, run.exit_code
        own, others = _own_files(run.heap_files, run.pid, prefix)
        verdict.other_processes = others
        if not own:
            verdict.problem = (f"{job.argv[0]} wrote no profile: it was killed or ended "
                               "without running exit handlers (_exit)")
            return verdict
        try:
            profiles = {heap: read_heap(path) for heap, path in own.items()}
            verdict.results = check_budgets(job.budgets, profiles, settings.top)
            if settings.save_dir:
                save_profiles(own, settings.save_dir, job.name)
        except UserError as e:
            verdict.problem = str(e)
    if run.exit_code != 0 and verdict.problem is None:
        verdict.problem = f"{job.argv[0]} exited with status {run.exit_code}"
    return verdict


def _own_files(files: list[Path], pid: int, prefix: str) -> tuple[dict[str, Path], int]:
    """The command's own files by heap, and how many other processes wrote files."""
    pattern = heap_file_pattern(prefix)
    own: dict[str, Path] = {}
    others = set()
    for path in files:
        m = pattern.match(path.name)
        if m is None:
            continue
        if int(m[1]) == pid:
            own[m[3] or "host"] = path
        else:
            others.add(int(m[1]))
    return own, len(others)


def save_profiles(files: Mapping[str, Path], folder: str, name: str) -> list[Path]:
    """Copy a command's files to FOLDER/NAME.heap and FOLDER/NAME.HEAP.heap (device
    heaps), e.g. as baselines for max-growth-vs."""
    stem = re.sub(r"[^\w.-]", "_", name)
    saved = []
    for heap, path in files.items():
        target = Path(folder) / heap_file(stem, heap)
        try:
            with open(path, "rb") as src, atomic_open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except OSError as e:
            raise BudgetError(f"cannot write {target}: {e.strerror}") from None
        saved.append(target)
    return saved
