"""Memory budgets: budgets per heap, from options and budget files (TOML), and the
commands they judge.

A budget is a limit on one measure of one heap's profile (see gate/check.py for how each
is measured), in a size with an explicit unit (units.parse_size); a limit is exceeded
when the measured value is strictly greater.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mem_profiler.core.errors import BudgetError
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.input_files import read_regular
from mem_profiler.core.units import format_size, parse_size
from mem_profiler.gate.kinds import CATEGORY, GROWTH, KINDS, SIZE_KINDS

if TYPE_CHECKING:
    from mem_profiler.core.profile import HeapProfile

TOLERANCE = "tolerance"
DEFAULT_TOLERANCE = 0.05

_PERCENT_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*")
MAX_BUDGET_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Budget:
    """A limit on one measure of one heap.

    For max-growth-vs, `baseline` is a .heap file and the limit is its peak plus
    `tolerance` (a fraction); `limit` is unused. growth_budget reads the baseline, once:
    `baseline_profile` is what the judging measures; it is not part of the budget's value
    (not compared, not in the gate's JSON). For max-category, `category` is what the
    memory is for (parser/model/categories.py), whose own peak `limit` bounds."""

    kind: str
    heap: str = "host"
    limit: int = 0
    baseline: str | None = None
    tolerance: float = DEFAULT_TOLERANCE
    category: str | None = None
    baseline_profile: HeapProfile | None = field(default=None, compare=False, repr=False)

    @property
    def growth_baseline(self) -> HeapProfile:
        """The baseline's profile, of a max-growth-vs budget made by growth_budget."""
        if self.baseline_profile is None:
            raise ValueError(f"{self.describe()}: the baseline has not been read")
        return self.baseline_profile

    @property
    def key(self) -> tuple[str, str]:
        """What a later budget of the same key replaces: (heap, kind), the kind with its
        category for max-category."""
        return self.heap, self.kind if self.category is None else f"{self.kind} {self.category}"

    def describe(self) -> str:
        """`host max-peak 64.0 MiB`, `cuda max-growth-vs base.cuda.heap +5%`,
        `host max-category optimizer_state 1.0 GiB`."""
        if self.kind == GROWTH:
            return f"{self.heap} {self.kind} {self.baseline} +{format_percent(self.tolerance)}"
        what = f"{self.kind} {self.category}" if self.kind == CATEGORY else self.kind
        return f"{self.heap} {what} {format_size(self.limit, exact=False)}"


@dataclass
class BudgetCommand:
    """A named command of a budget file: what to run (None: given on the command line)
    and its own budgets, which replace the file-wide ones of the same heap and kind."""

    name: str
    argv: list[str] | None
    budgets: list[Budget]


@dataclass
class BudgetFile:
    path: str
    budgets: list[Budget]  # for every command
    commands: dict[str, BudgetCommand]


@dataclass
class GateJob:
    """A command and the budgets it is judged by."""

    name: str
    argv: list[str]
    budgets: list[Budget]


def parse_tolerance(value: object) -> float:
    """A percentage (`5%`, `5`, `2.5%`) as a fraction; BudgetError for any other value."""
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    m = _PERCENT_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None or not math.isfinite(float(m[1])):
        raise BudgetError(f"bad tolerance {value!r}: expected a percentage such as 5%")
    return float(m[1]) / 100


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def check_heap(heap: str) -> str:
    if heap not in HEAPS:
        raise BudgetError(f"unknown heap {heap!r}: expected one of {', '.join(HEAPS)}")
    return heap


def size_budget(kind: str, spec: object, heap: str = "host") -> Budget:
    """A budget from `[HEAP:]SIZE` (a command-line value); `heap` when none is named."""
    if isinstance(spec, str) and ":" in spec:
        heap, _, spec = spec.partition(":")
    return Budget(kind, check_heap(heap.strip()), parse_size(spec))


def category_budget(category: str, spec: object, heap: str = "host") -> Budget:
    """A max-category budget: the most bytes of one category live at once."""
    if not re.fullmatch(r"\w+", category):
        raise BudgetError(f"bad category {category!r}: a name of letters, digits and _")
    return Budget(CATEGORY, check_heap(heap.strip()), parse_size(spec), category=category)


def category_option(spec: str) -> Budget:
    """A max-category budget from `--max-category [HEAP:]CATEGORY=SIZE`."""
    where, sep, rest = spec.partition(":")
    heap, rest = (where, rest) if sep else ("host", spec)
    category, eq, size = rest.partition("=")
    if not eq:
        raise BudgetError(f"expected [HEAP:]CATEGORY=SIZE, found {spec!r}")
    return category_budget(category.strip(), size, heap)


def growth_budget(
    baseline: str, tolerance: float = DEFAULT_TOLERANCE, heap: str | None = None
) -> Budget:
    """A max-growth-vs budget: the heap is the baseline's own (`# heap:`); BudgetError if
    it is not `heap`, or if the baseline has no peak to compare with."""
    from mem_profiler.parser.read.heap_file import read_heap  # numpy: not for every pytest run

    profile = read_heap(baseline)
    if heap is not None and profile.heap != heap:
        raise BudgetError(f"{baseline} is a profile of the {profile.heap} heap, not of {heap}")
    if profile.peak_bytes is None:
        why = "made without live tracking" if profile.version else "not a mem_profiler capture"
        raise BudgetError(
            f"{baseline} records no peak (it is {why}): "
            "make baselines with `mem_profiler gate --save-profiles DIR`"
        )
    return Budget(
        GROWTH,
        check_heap(profile.heap),
        baseline=baseline,
        tolerance=tolerance,
        baseline_profile=profile,
    )


def option_budgets(
    sizes: Mapping[str, Iterable[str]],
    baselines: Iterable[str],
    tolerance: str = "5%",
    categories: Iterable[str] = (),
) -> list[Budget]:
    """Budgets from command-line options: `sizes` maps a size kind (max-peak...) to its
    `[HEAP:]SIZE` values; `baselines` are max-growth-vs files, judged with `tolerance`;
    `categories`, `[HEAP:]CATEGORY=SIZE` of max-category."""
    budgets = [size_budget(kind, spec) for kind, specs in sizes.items() for spec in specs]
    budgets += [category_option(spec) for spec in categories]
    baselines = list(baselines)
    if baselines:
        fraction = parse_tolerance(tolerance)
        budgets += [growth_budget(path, fraction) for path in baselines]
    return merge(budgets)


def merge(*layers: Iterable[Budget]) -> list[Budget]:
    """The budgets of all layers; a later layer's budget replaces an earlier one of the
    same heap and kind."""
    merged: dict[tuple[str, str], Budget] = {}
    for layer in layers:
        for budget in layer:
            merged[budget.key] = budget
    return list(merged.values())


def plan_jobs(
    command: list[str],
    budget_file: BudgetFile | None,
    name: str | None,
    option_budgets: list[Budget],
) -> list[GateJob]:
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
            raise BudgetError(
                f"{budget_file.path} has no command with a 'run' key: give the command after --"
            )
    else:
        named = []
    if named:
        jobs = [
            GateJob(c.name, command or c.argv or [], merge(file_wide, c.budgets, option_budgets))
            for c in named
        ]
    elif command:
        jobs = [GateJob(os.path.basename(command[0]), command, merge(file_wide, option_budgets))]
    else:
        raise BudgetError(
            "no command to run: give it after --, e.g. "
            "mem_profiler gate --max-peak 256MiB -- ./tests"
        )
    for job in jobs:
        if not job.argv:
            raise BudgetError(f"[commands.{job.name}] has no 'run' key: give the command after --")
        if not job.budgets:
            raise BudgetError(
                f"no budget for {job.name}: give --max-peak, --max-leak-per-stack"
                "... or a budget file"
            )
    return jobs


def load_budget_file(path: str | os.PathLike[str]) -> BudgetFile:
    """Read a budget file: heap tables (`[host]`, `[cuda]`...) for every command, and
    `[commands.NAME]` tables with an optional `run` and heap tables of their own.
    Baseline paths are relative to the file's folder."""
    import tomllib

    name = os.fspath(path)
    try:
        data = read_regular(name, "a budget file", BudgetError, MAX_BUDGET_FILE_BYTES)
        doc = tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise BudgetError(f"budget file {name} does not exist") from None
    except OSError as e:
        raise BudgetError(f"cannot read budget file {name}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise BudgetError(
            f"{name} is not UTF-8 text (byte {e.start} is"
            f" {data[e.start]:#04x}): save it as UTF-8, as TOML requires"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise BudgetError(f"{name} is not valid TOML: {e}") from None
    except RecursionError:
        raise BudgetError(f"{name} nests arrays or tables too deeply") from None
    reader = _FileReader(name)
    commands = doc.pop("commands", {})
    budgets = reader.heap_tables(doc, "")
    if not isinstance(commands, dict):
        raise BudgetError(f"{name}: 'commands' must be a table of [commands.NAME] tables")
    named = {}
    for cmd, table in commands.items():
        where = f"[commands.{cmd}]"
        if not isinstance(table, dict):
            raise BudgetError(f"{name}: {where} must be a table")
        table = dict(table)
        argv = reader.argv(table.pop("run", None), where)
        named[cmd] = BudgetCommand(cmd, argv, reader.heap_tables(table, f"commands.{cmd}."))
    return BudgetFile(name, budgets, named)


class _FileReader:
    """Checks the tables of one budget file, naming the file and table in each error."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.folder = os.path.dirname(os.path.abspath(path))

    def fail(self, message: str) -> BudgetError:
        return BudgetError(f"{self.path}: {message}")

    def argv(self, run: object, where: str) -> list[str] | None:
        if run is None:
            return None
        if isinstance(run, str):
            import shlex

            try:
                argv = shlex.split(run)
            except ValueError as e:  # an unterminated quote, a final backslash
                raise self.fail(
                    f"'run' in {where} cannot be split as the shell does: {str(e).lower()}"
                ) from None
        elif isinstance(run, list) and all(isinstance(a, str) for a in run):
            argv = list(run)
        else:
            raise self.fail(f"'run' in {where} must be a string or a list of strings")
        if not argv:
            raise self.fail(f"'run' in {where} is empty")
        return argv

    def heap_tables(self, tables: dict[str, object], prefix: str) -> list[Budget]:
        budgets = []
        for heap, table in tables.items():
            where = f"[{prefix}{heap}]"
            if heap not in HEAPS:
                also = "" if prefix else " or [commands.NAME]"
                raise self.fail(
                    f"unknown table {where}: expected a heap ({', '.join(HEAPS)}){also}"
                )
            if not isinstance(table, dict):
                raise self.fail(f"{where} must be a table of budgets")
            budgets += self.heap_table(heap, table, where)
        return budgets

    def heap_table(self, heap: str, table: dict[str, object], where: str) -> list[Budget]:
        unknown = sorted(set(table) - {*KINDS, TOLERANCE})
        if unknown:
            raise self.fail(
                f"unknown key {unknown[0]!r} in {where}: expected {', '.join(KINDS)} or {TOLERANCE}"
            )
        try:
            budgets = [size_budget(kind, table[kind], heap) for kind in SIZE_KINDS if kind in table]
            categories = table.get(CATEGORY, {})
            if not isinstance(categories, dict):
                raise BudgetError(f"'{CATEGORY}' must be a table of CATEGORY = SIZE")
            budgets += [category_budget(c, size, heap) for c, size in categories.items()]
            if GROWTH in table:
                tolerance = (
                    parse_tolerance(table[TOLERANCE]) if TOLERANCE in table else DEFAULT_TOLERANCE
                )
                budgets.append(growth_budget(self.baseline(table[GROWTH], where), tolerance, heap))
            elif TOLERANCE in table:
                raise BudgetError(f"'{TOLERANCE}' without '{GROWTH}'")
        except BudgetError as e:
            raise self.fail(f"{where}: {e}") from None
        return budgets

    def baseline(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(f"'{GROWTH}' in {where} must be the path of a .heap file")
        return os.path.join(self.folder, os.path.expanduser(value))


def is_exceeded(measured: float, limit: float) -> bool:
    """Exceeded means strictly greater (a NaN never passes)."""
    return not measured <= limit
