"""Budgets judged on .heap profiles: the measured value, its expected sampling error,
and for an exceeded budget the stacks responsible, symbolized; a command's verdict and
the gate's exit status. gate/report.py writes them for people and CI systems.

Measures (per heap):
  max-peak            the most bytes live at once in the window (`# peak_live_bytes`)
  max-live-at-exit    bytes still live when the file was written
  max-leak-per-stack  the most bytes still live from any one stack
                      (both without what libraries keep on purpose until exit:
                      gate/suppressions.py)
  max-total-alloc     every byte allocated in the window, freed or not
  max-growth-vs       the peak, against the baseline file's peak plus the tolerance
  max-category        the most bytes of one category live at once (replayed from the
                      event log; parser/model/categories.py's PyTorch rules)
At rate 1 every allocation is recorded and the values are exact; at rate N they are
unsampled estimates whose standard deviation is given (docs/run-and-windows.md, "Sampling").
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from mem_profiler.core.errors import BudgetError, UserError
from mem_profiler.core.profile import HeapProfile, at_peak, in_use, peak_stacks_moment
from mem_profiler.core.units import format_size
from mem_profiler.gate.budgets import Budget, is_exceeded
from mem_profiler.gate.kinds import CATEGORY, GROWTH, LEAK_PER_STACK, LIVE_AT_EXIT, PEAK
from mem_profiler.gate.suppressions import BUILTIN, Suppression, suppressed_by
from mem_profiler.parser.common.arrays import stack_sums
from mem_profiler.parser.common.sampling import estimates, python_frames_note, scale_factors
from mem_profiler.parser.log.analysis import WindowLog, held_at, open_window_log, replay_groups
from mem_profiler.parser.log_pipeline import allocation_groups
from mem_profiler.parser.model.categories import TORCH_RULES, Rule
from mem_profiler.parser.model.focus import some_stacks
from mem_profiler.parser.pipeline import load
from mem_profiler.parser.report.request import Request
from mem_profiler.parser.symbols.python_frames import (
    fold_interpreter_frames,
    fold_native_frames,
    is_python_frame,
)
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile, innermost_python

# Exit statuses of the gate.
HOLD, EXCEEDED, SETUP_ERROR = 0, 1, 2
_ENTRY_FRAMES = {
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
}


@dataclass
class StackLine:
    """One stack of a report: its bytes (for growth: now minus baseline), frames leaf
    first, for growth the bytes it had in the baseline, and where among the frames the
    innermost Python frame is (None: none)."""

    bytes: float
    frames: list[str]
    baseline_bytes: float | None = None
    python_at: int | None = None


@dataclass
class BudgetResult:
    budget: Budget
    measured: float
    limit: float
    exceeded: bool
    rate: int  # the profile's sampling rate; 1 is exact
    sd: float = 0.0  # one standard deviation of `measured`
    baseline_peak: float | None = None  # max-growth-vs
    stacks: list[StackLine] = field(default_factory=list)  # only when exceeded
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.rate <= 1


@dataclass
class CommandVerdict:
    """The judgement of one command: a result per budget, or the problem that kept the
    command from being judged (then `results` may be empty)."""

    name: str
    argv: list[str]
    budgets: list[Budget]
    started: str  # local time, ISO 8601 without a zone
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


def gate_status(verdicts: list[CommandVerdict]) -> int:
    """SETUP_ERROR if a command could not be judged, else EXCEEDED if a budget was,
    else HOLD."""
    if any(v.problem for v in verdicts):
        return SETUP_ERROR
    return EXCEEDED if any(v.exceeded for v in verdicts) else HOLD


def check_budgets(
    budgets: Iterable[Budget],
    profiles: Mapping[str, HeapProfile],
    top: int = 5,
    allow_dropped: bool = False,
    files: Mapping[str, str | os.PathLike[str]] | None = None,
    suppressions: Sequence[Suppression] = BUILTIN,
    category_rules: tuple[Rule, ...] = TORCH_RULES,
) -> list[BudgetResult]:
    """Judge each budget on the profile of its heap (a heap without a profile was not
    used: every measure is 0); for those exceeded, name the `top` stacks responsible.
    A category's budget reads the event log beside the heap's file (`files`), its
    stacks' categories by `category_rules`. What is
    live at exit leaves out the stacks `suppressions` match, and says so.
    BudgetError for a profile the sampler warns misses the program's allocations (its
    own malloc), and for one that dropped samples, unless `allow_dropped`."""
    budgets = list(budgets)
    for heap in dict.fromkeys(b.heap for b in budgets):
        profile = profiles.get(heap)
        if profile is not None and profile.warnings:
            raise BudgetError(f"{profile.warnings[0]}: its budgets cannot be judged")
        if profile is not None and profile.dropped_samples and not allow_dropped:
            raise BudgetError(partial_profile(profile))
    views: dict[tuple[str, bool], _Stacks] = {}

    def view(budget: Budget) -> _Stacks:
        """The stacks a budget is judged on: for what is live at exit, of it what nothing
        pointed to where the capture looked (`run --leak-check`)."""
        profile = profiles[budget.heap]
        leaks = budget.kind in (LIVE_AT_EXIT, LEAK_PER_STACK) and profile.unreachable is not None
        if (budget.heap, leaks) not in views:
            shown = in_use(profile, profile.unreachable) if leaks else profile
            assert shown is not None
            views[budget.heap, leaks] = _Stacks(shown, [profile.exe], suppressions)
        return views[budget.heap, leaks]

    replays: dict[str, _Replay] = {}  # a heap's categories, replayed once for its budgets
    results = []
    for budget in budgets:
        profile = profiles.get(budget.heap)
        if budget.kind == CATEGORY and profile is not None:
            path = (files or {}).get(budget.heap)
            if path is None:
                raise BudgetError(f"{budget.describe()} needs the event log of a log-mode run")
            if profile.python_frames_left_out:
                raise BudgetError(
                    f"{budget.describe()} cannot be judged: {python_frames_note(profile)}"
                )
            if budget.heap not in replays:
                replays[budget.heap] = _Replay.of(path, profile, category_rules)
            result = _category_peak(budget, profile, replays[budget.heap], top)
        else:
            result = _measure(budget, profile, view)
            if profile is not None and budget.kind in (LIVE_AT_EXIT, LEAK_PER_STACK):
                result.notes += view(budget).left_out_note() + _reachable_note(profile)
        if profile is None:
            result.notes.append(f"the {budget.heap} heap was not used")
        else:
            if profile.dropped_samples:
                result.notes.append(
                    f"{profile.dropped_samples:,} samples were dropped (the "
                    "sampler's tables were full): the measured value is too low"
                )
            if result.exceeded and budget.kind != CATEGORY:
                result.notes += view(budget).notes
                result.stacks = _responsible(budget, view(budget), top, result.notes)
        results.append(result)
    return results


@dataclass
class _Replay:
    """Every category's bytes live over a heap's log: the log, the categories' names,
    each allocation's category (an index of them) and their values at `times`."""

    log: WindowLog
    names: list[str]
    group: np.ndarray
    times: np.ndarray
    values: np.ndarray

    @classmethod
    def of(
        cls, path: str | os.PathLike[str], profile: HeapProfile, rules: tuple[Rule, ...]
    ) -> _Replay:
        log = open_window_log(path)
        names, group = allocation_groups(log, Request(binary=profile.exe, categories=rules))
        return cls(log, names, group, *replay_groups(log, group, len(names)))


def _category_peak(budget: Budget, profile: HeapProfile, replay: _Replay, top: int) -> BudgetResult:
    """A category's most bytes live at once, replayed from the log's allocations and
    frees; if over the limit, the category's stacks live at that moment."""
    names = replay.names
    if budget.category not in names:
        raise BudgetError(f"unknown category {budget.category!r}: one of {', '.join(names)}")
    index = names.index(budget.category)
    at = int(np.argmax(replay.values[index]))
    peak = float(replay.values[index][at])
    sd = math.sqrt(peak * profile.rate) if profile.rate > 1 else 0.0
    result = BudgetResult(
        budget, peak, float(budget.limit), is_exceeded(peak, budget.limit), profile.rate, sd
    )
    if result.exceeded:
        then = held_at(replay.log, int(replay.times[at]), replay.group == index)
        stacks = _Stacks(then, [profile.exe])
        result.notes += stacks.notes
        if stacks.sym is not None:
            est = stack_estimates(then, live=True)[0]
            grouped = np.bincount(stacks.group, est, len(stacks.frames))
            order = [
                g for g in np.argsort(-grouped, kind="stable")[:top].tolist() if grouped[g] > 0
            ]
            result.stacks = stacks.shown(order, live=True, values=grouped)
    return result


def partial_profile(profile: HeapProfile) -> str:
    """Why a profile that dropped samples is no measurement, and what to do."""
    drops = profile.drops
    causes, fixes = [], []
    if drops is None or drops.stack_table:
        causes.append("its stacks outgrew the sampler's memory for them")
        fixes.append("give them more (--stack-memory MIB, MEMPROF_STACK_MEMORY)")
    if drops is not None and drops.live_table:
        causes.append("the table of live blocks was full")
        fixes.append("a larger one (MEMPROF_MAX_LIVE)")
    if drops is not None and drops.memory:
        causes.append("the machine's memory ran short")
    if not causes:
        causes.append("the sampler's tables were full")
    return (
        f"{profile.path} dropped {profile.dropped_samples:,} samples ({' and '.join(causes)}),"
        " so every measure of it is too low: "
        + "".join(f"{fix} or " for fix in fixes)
        + "sample less often (--rate), or judge the partial profile with --allow-dropped"
    )


def _reachable_note(profile: HeapProfile) -> list[str]:
    """What was live at exit but reachable, where the capture looked: not a leak."""
    if profile.unreachable is None:
        return []
    live = float(stack_estimates(profile, live=True)[0].sum())
    reachable = live - float(profile.unreachable.estimates[:, 1].sum())
    return [
        f"{format_size(reachable, exact=profile.rate <= 1)} live at exit was still pointed to"
        " from the program's data, its thread-local storage or its stack: not leaked (as"
        " LeakSanitizer decides it)"
    ]


def _measure(
    budget: Budget, profile: HeapProfile | None, view: Callable[[Budget], _Stacks]
) -> BudgetResult:
    limit, baseline = float(budget.limit), None
    if budget.kind == GROWTH:
        baseline = _peak(budget.growth_baseline)[0]
        limit = baseline * (1 + budget.tolerance)
    if profile is None:
        return BudgetResult(budget, 0.0, limit, is_exceeded(0.0, limit), 1, 0.0, baseline)
    if budget.kind in (PEAK, GROWTH):
        value, sd = _peak(profile)
    elif budget.kind == LEAK_PER_STACK:
        est, var = view(budget).leaks()
        worst = int(np.argmax(est)) if len(est) else None
        value, sd = (
            (0.0, 0.0) if worst is None else (float(est[worst]), math.sqrt(float(var[worst])))
        )
    elif budget.kind == LIVE_AT_EXIT:
        est, var = view(budget).leaks()
        value, sd = float(est.sum()), math.sqrt(float(var.sum()))
    else:
        est, est_sd = stack_estimates(profile, live=False)
        value, sd = float(est.sum()), math.sqrt(float(np.square(est_sd).sum()))
    return BudgetResult(budget, value, limit, is_exceeded(value, limit), profile.rate, sd, baseline)


def _peak(profile: HeapProfile) -> tuple[float, float]:
    """The peak of live bytes and its standard deviation. At rate R an estimate of B bytes
    in blocks of s has variance sum s^2 (1-p)/p <= R B (s (1-p)/p <= R): the bound, which
    needs no sizes of the blocks live at the peak."""
    if profile.peak_bytes is None:
        raise BudgetError(
            f"{profile.path} records no peak (a capture of an earlier mem_profiler, made"
            " without live tracking): capture it again"
        )
    peak = float(profile.peak_bytes)
    return peak, math.sqrt(peak * profile.rate) if profile.rate > 1 else 0.0


def stack_estimates(profile: HeapProfile, live: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per stack, the unsampled bytes (live at the end, or allocated) and their standard
    deviation: k samples of a stack whose blocks are sampled with probability p estimate
    k/p blocks with relative sd sqrt((1-p)/k)."""
    objs, nbytes = (
        (profile.cur_objs, profile.cur_bytes) if live else (profile.acc_objs, profile.acc_bytes)
    )
    scale = scale_factors(objs, nbytes, profile.rate)
    est = estimates(profile, live)[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.sqrt(np.clip(1 - 1 / scale, 0, None) / objs)
    return est, np.where(objs > 0, est * rel, 0.0)


class _Stacks:
    """A profile's stacks as a user sees them: symbolized (against the first of
    `binaries` that is the build that ran, else as addresses, with a note), a Python
    program's as its Python frames (python_frames.fold_native_frames, the reports' view),
    and grouped by their functions, so that call sites of one line (an unrolled loop) or
    of one function are one stack. The suppressions judge each stack by every frame but
    the interpreter's (fold_interpreter_frames): they name an extension's functions under
    Python ones too. Line numbers are read (DWARF, slow for a large library) only for the
    stacks a report shows, through the pipeline (parser/pipeline.py)."""

    def __init__(
        self,
        profile: HeapProfile,
        binaries: list[str | None],
        suppressions: Sequence[Suppression] = (),
    ) -> None:
        self.profile = profile
        self.suppressions = suppressions
        self.notes: list[str] = []
        self.binary, self.native = _symbolized(profile, binaries, self.notes)
        self.sym = None if self.native is None else fold_native_frames(self.native)
        self.group, self.frames = _grouped(_FrameNames(self.sym, profile, lines=False))

    def grouped(self, live: bool, kept: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Bytes of each stack of self.frames (live at the end, or allocated), of the
        profile's stacks `kept` where given, and their variance."""
        est, sd = stack_estimates(self.profile, live)
        if kept is not None:
            est, sd = est * kept, sd * kept
        count = len(self.frames)
        return np.bincount(self.group, est, count), np.bincount(self.group, np.square(sd), count)

    @functools.cached_property
    def suppressed(self) -> list[Suppression | None]:
        """The rule that leaves each of the profile's stacks out of a leak check, if any."""
        judged = None if self.native is None else fold_interpreter_frames(self.native)
        group, frames = _grouped(_FrameNames(judged, self.profile, lines=False))
        without_python = np.zeros(len(frames), bool)
        if "python" in self.profile.meta:
            python = stack_sums(is_python_frame(self.profile.addrs), self.profile.offsets)
            without_python[group[python == 0]] = True
        rules = [
            suppressed_by(names, self.suppressions, bool(without_python[g]))
            for g, names in enumerate(frames)
        ]
        return [rules[g] for g in group.tolist()]

    def leaks(self) -> tuple[np.ndarray, np.ndarray]:
        """grouped(live=True) without the suppressed stacks."""
        return self.grouped(live=True, kept=np.array([r is None for r in self.suppressed], bool))

    def left_out_note(self) -> list[str]:
        """What the suppressions left out of what is live at exit, by reason."""
        est = stack_estimates(self.profile, live=True)[0]
        by_reason: dict[str, float] = {}
        for rule, value in zip(self.suppressed, est.tolist(), strict=True):
            if rule is not None and value > 0:
                by_reason[rule.reason] = by_reason.get(rule.reason, 0.0) + value
        if not by_reason:
            return []
        parts = ", ".join(f"{why} {format_size(v, exact=False)}" for why, v in by_reason.items())
        return [f"left out as kept until exit on purpose, not leaked: {parts}"]

    def shown(self, groups: list[int], live: bool, values: np.ndarray) -> list[StackLine]:
        """These stacks with `values` (by group) and their frames with file:line, from
        each one's largest call site."""
        est = stack_estimates(self.profile, live)[0]
        first = [
            int(np.flatnonzero(self.group == g)[np.argmax(est[self.group == g])]) for g in groups
        ]

        def lines(names: _FrameNames, rows: list[int]) -> list[StackLine]:
            return [
                StackLine(float(values[g]), names(i), python_at=names.python_at(i))
                for g, i in zip(groups, rows, strict=True)
            ]

        if self.binary:
            shown = some_stacks(self.profile, np.array(first, np.int64))
            try:  # lines only for the stacks shown
                sym = load(Request(binary=self.binary, file_lines=True), shown)
                return lines(_FrameNames(sym, shown, lines=True), list(range(len(first))))
            except UserError:  # unreadable DWARF: no line numbers
                pass
        return lines(_FrameNames(self.sym, self.profile, lines=False), first)


def _responsible(budget: Budget, stacks: _Stacks, top: int, notes: list[str]) -> list[StackLine]:
    if budget.kind == GROWTH:
        base = budget.growth_baseline
        base_stacks = _Stacks(base, [base.exe, stacks.profile.exe])
        notes += base_stacks.notes
        if stacks.sym is not None and base_stacks.sym is not None:
            return _grown(stacks, base_stacks, top)
        notes.append(
            "the stacks cannot be compared with the baseline's; "
            "the stacks that allocated most are shown"
        )
    if budget.kind == PEAK:
        peak = at_peak(stacks.profile)
        if peak is not None:
            if moment := peak_stacks_moment(stacks.profile):
                notes.append(moment)
            return _largest(_Stacks(peak, [stacks.profile.exe]), top, live=True)
        notes.append(
            "which stacks were live at the peak is not recorded (a capture of an earlier"
            " mem_profiler): the stacks that allocated most are shown"
        )
    return _largest(stacks, top, live=budget.kind in (LIVE_AT_EXIT, LEAK_PER_STACK))


def _largest(stacks: _Stacks, top: int, live: bool) -> list[StackLine]:
    """The `top` stacks holding most (live: less what the suppressions leave out) or
    that allocated most."""
    est = stacks.leaks()[0] if live else stacks.grouped(live)[0]
    order = [g for g in np.argsort(-est, kind="stable")[:top].tolist() if est[g] > 0]
    return stacks.shown(order, live, values=est)


def _symbolized(
    profile: HeapProfile, binaries: list[str | None], notes: list[str]
) -> tuple[str | None, SymbolizedProfile | None]:
    """(binary, the profile symbolized without lines, every frame kept) for the first of
    `binaries` that is the build that ran; (None, None) and a note when none is."""
    problem = f"{profile.path} names no executable"
    for binary in dict.fromkeys(b for b in binaries if b):
        try:
            return binary, load(Request(binary=binary, native=True), profile)
        except UserError as e:
            problem = str(e).rstrip(".")
    notes.append(f"stacks are shown as addresses: {problem}")
    return None, None


class _FrameNames:
    """Stack i's frame names, leaf first, without the C runtime's entry frames, labelled
    as in the reports (frame_label): `grow_site /src/sites.c:31` with lines where they
    were read, else `grow_site`; and where its innermost Python frame is among them."""

    def __init__(self, sym: SymbolizedProfile | None, profile: HeapProfile, lines: bool):
        self.sym = sym
        self.count = len(profile.offsets) - 1
        if sym is None:
            self.addrs, self.bounds = profile.addrs.tolist(), profile.offsets.tolist()
            return
        display = sym.display_names()
        self.labels = sym.location_labels(lines)
        self.entry = [display[f] in _ENTRY_FRAMES for f in sym.func_of.tolist()]
        self.python = sym.python_locations()
        self.frames, self.offsets = sym.frames.tolist(), sym.offsets.tolist()

    def _stack(self, i: int) -> list[int]:
        stack = self.frames[self.offsets[i] : self.offsets[i + 1]]
        while stack and self.entry[stack[-1]]:
            stack.pop()
        return stack

    def __call__(self, i: int) -> list[str]:
        if self.sym is None:
            return [f"{a:#x}" for a in self.addrs[self.bounds[i] : self.bounds[i + 1]]]
        return [self.labels[f] for f in self._stack(i)]

    def python_at(self, i: int) -> int | None:
        if self.sym is None:
            return None
        return innermost_python(self._stack(i), self.python)


def _grouped(names: _FrameNames) -> tuple[np.ndarray, list[list[str]]]:
    """Per stack of names' profile, the index of its frame names among the distinct
    ones, and those."""
    keys: dict[tuple[str, ...], int] = {}
    group = [keys.setdefault(tuple(names(i)), len(keys)) for i in range(names.count)]
    return np.array(group, np.int64), [list(k) for k in keys]


def _grown(stacks: _Stacks, base: _Stacks, top: int) -> list[StackLine]:
    """Stacks matched by their function names (addresses and lines differ between runs
    and builds), by growth of the bytes they allocated, shown as the other reports'."""
    before = dict(zip(map(tuple, base.frames), base.grouped(live=False)[0].tolist(), strict=True))
    had = np.array([before.get(tuple(f), 0.0) for f in stacks.frames])
    growth = stacks.grouped(live=False)[0] - had
    order = [g for g in np.argsort(-growth, kind="stable")[:top].tolist() if growth[g] > 0]
    shown = stacks.shown(order, live=False, values=growth)
    return [
        replace(line, baseline_bytes=float(had[g])) for g, line in zip(order, shown, strict=True)
    ]
