"""Analyses of a capture's event log: what was live at a time, the peak, what was
allocated between two marks, and leaks (of the window, and between occurrences of a mark
with msMemScope's semantics). Profiles come out as HeapProfiles with the capture's
mappings and build ids, so the pipeline (parser/pipeline.py) reports them as it reports a .heap
file."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mem_profiler.core.errors import UserError
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.profile import HeapProfile, of_another_moment
from mem_profiler.parser.common.arrays import clip_int64
from mem_profiler.parser.common.sampling import sample_weights
from mem_profiler.parser.model.aggregate import node_frames
from mem_profiler.parser.read.context_tree import eval_range
from mem_profiler.parser.read.event_log import (
    ALLOC,
    FREE,
    EventLog,
    LogStacks,
    Mark,
    heap_id,
    locate,
    read_log,
)
from mem_profiler.parser.symbols.resolver import kept_images
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile

NEVER = np.iinfo(np.int64).max  # the end of an allocation still live when the log ends
MS = 1e6


@dataclass
class Allocations:
    """The sampled allocations of a log in the order they were made, each with the time it
    ended: its free, or a later allocation at the same address (whose free was lost)."""

    heap: np.ndarray  # uint8
    stack: np.ndarray  # uint32
    address: np.ndarray  # uint64
    size: np.ndarray  # uint64
    start: np.ndarray  # int64 ns from the window's start
    end: np.ndarray  # int64 ns, NEVER when live at the end of the log
    tid: np.ndarray  # uint32: the thread that made it
    freed_by: np.ndarray  # uint32: the thread that freed it; 0 if live or its free was lost


@dataclass
class WindowLog:
    """A log-mode window read back: its event log, its .heap (None if the process wrote
    none), the heap reported and its allocations paired with their frees."""

    log: EventLog
    profile: HeapProfile | None
    heap: int
    allocs: Allocations

    @property
    def heap_name(self) -> str:
        return HEAPS[self.heap]

    @property
    def warnings(self) -> list[str]:
        missing = (
            []
            if self.profile is not None
            else [
                f"no .heap file for {self.log.base} (the process did not exit normally?): without"
                " its memory map, frames stay addresses."
            ]
        )
        stopped = self.profile.meta.get("log_stopped") if self.profile is not None else None
        if stopped:
            end_ms = self.log.end_ns / 1e6
            missing.append(
                f"the event log stopped early ({stopped}): events after "
                f"{end_ms:.1f} ms of the window are missing."
            )
        return self.log.warnings + missing


@dataclass
class Peak:
    """The highest estimated live bytes of a heap, found by replaying its events."""

    heap: str
    time_ns: int
    bytes: int
    interval: tuple[int, int] | None  # the timeline's interval with the highest peak (ns)


@dataclass
class LeakSet:
    """Sampled allocations not freed, as a profile (cur counts), with the first and last
    allocation time of each of its stacks."""

    profile: HeapProfile
    first_ns: np.ndarray
    last_ns: np.ndarray
    scope: str  # what they leaked from: "the window (0.0-812.4 ms)", ...


@dataclass
class Leak:
    """One stack's leaked allocations, estimated (unsampled)."""

    heap: str
    stack: list[str]  # function names, leaf first
    bytes: float
    objects: float
    samples: int
    first_ms: float
    last_ms: float


def open_window_log(path: str | os.PathLike[str], heap: str | None = None) -> WindowLog:
    """The window log of a .heap or .memlog file; `heap` defaults to the .heap's own."""
    base, profile = locate(path)
    log = read_log(base, eval_range(profile))
    chosen = heap_id(heap or (profile.heap if profile is not None else HEAPS[0]))
    return WindowLog(log, profile, chosen, pair_frees(log))


def pair_frees(log: EventLog) -> Allocations:
    """Each allocation with its end (see _sorted_ends), in time order."""
    ev = log.events
    order, end = _sorted_ends(ev)
    is_alloc = ev["type"][order] == ALLOC
    made = order[is_alloc]
    seq = np.argsort(ev["time_ns"][made], kind="stable")
    chosen = ev[made[seq]]
    # the event after an allocation at its (heap, address), where it is the free
    after = np.r_[order[1:], order[-1:]][is_alloc][seq]
    freed = (end[is_alloc][seq] != NEVER) & (ev["type"][after] == FREE)
    return Allocations(
        chosen["heap"],
        chosen["stack"],
        chosen["address"],
        chosen["size"],
        chosen["time_ns"],
        end[is_alloc][seq],
        chosen["tid"],
        np.where(freed, ev["tid"][after], 0).astype(np.uint32),
    )


def event_ends(events: np.ndarray) -> np.ndarray:
    """Per event, in the log's order: an allocation's end (see _sorted_ends), NEVER for
    the others."""
    order, end = _sorted_ends(events)
    by_event = np.empty_like(end)
    by_event[order] = end
    return by_event


def _sorted_ends(ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The events ordered by (heap, address, time), and for each allocation among them
    its end: its free, or a later allocation at the same address (whose free was lost);
    NEVER when live at the end of the log. Events at one (heap, address) alternate
    between allocation and free in time (the sampler stamps a free before the address
    can be handed out again; threads' events are written in runs, so the file's order is
    not time's)."""
    key = ev["heap"].astype(np.uint64) << np.uint64(56) | ev["address"]
    order = np.lexsort((ev["type"] == ALLOC, ev["time_ns"], key))  # a free first in a tie
    key, kind, times = key[order], ev["type"][order], ev["time_ns"][order]
    end = np.full(len(ev), NEVER, np.int64)
    ended = np.flatnonzero((kind[:-1] == ALLOC) & (key[:-1] == key[1:]))
    end[ended] = times[ended + 1]
    return order, end


def estimates(sizes: np.ndarray, rate: int) -> np.ndarray:
    """What the sampler counts for each sampled allocation: its size unsampled,
    s / (1 - exp(-s/rate)), rounded as sampler/tables/live_bytes.c rounds it."""
    sizes = np.asarray(sizes, np.float64)
    if rate <= 1:
        return clip_int64(sizes)
    return clip_int64(np.floor(sizes * sample_weights(sizes, rate) + 0.5))


def replay(cap: WindowLog, heap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(times, estimated live bytes) of a heap as the sampler's counter went: the value
    before the first event, then after each event in time order. Anchored to the timeline
    when rotation deleted the log's start."""
    heap = cap.heap if heap is None else heap
    ev = cap.log.events[cap.log.events["heap"] == heap]
    order = np.argsort(ev["time_ns"], kind="stable")
    est = estimates(ev["size"], cap.log.rate_of(heap))
    times = ev["time_ns"][order]
    values = np.r_[0, np.cumsum(np.where(ev["type"] == ALLOC, est, -est)[order])]
    times = np.r_[times[0] if cap.log.first_file > 1 and len(times) else 0, times]
    tl = cap.log.timeline[cap.log.timeline["heap"] == heap]
    if cap.log.first_file > 1 and len(tl):
        values += tl["end"][0] - values[np.searchsorted(times, tl["time_ns"][0], "right") - 1]
    return times, values


def replay_groups(cap: WindowLog, group: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(times, estimated live bytes of each group at them: groups x times) of the
    capture's heap, its allocations in `groups` groups (`group`: one per allocation of
    cap.allocs, -1 for none), from the allocations and frees the log recorded."""
    a = cap.allocs
    mine = (a.heap == cap.heap) & (group >= 0)
    est = estimates(a.size[mine], cap.log.rate_of(cap.heap)).astype(np.float64)
    ended = a.end[mine] != NEVER
    times = np.r_[a.start[mine], a.end[mine][ended]]
    deltas = np.r_[est, -est[ended]]
    of = np.r_[group[mine], group[mine][ended]]
    order = np.argsort(times, kind="stable")
    times, deltas, of = times[order], deltas[order], of[order]
    values = np.zeros((groups, len(times) + 1))
    for g in range(groups):
        values[g, 1:] = np.cumsum(np.where(of == g, deltas, 0.0))
    return np.r_[0, times], values


# A log's stacks symbolized together: expanded and named, all of them can take ten
# times the log (1.1 GB for the 17 million frames of a 66 MiB one), about 60 bytes a
# frame; a PyTorch program's stacks are some hundred frames deep, a C program's ten.
FRAMES_AT_ONCE = 1 << 21
STACKS_AT_ONCE = 65536


def stack_batches(stacks: LogStacks, ids: list[int]) -> Iterator[tuple[int, list[int]]]:
    """(where it starts, the batch) for each batch of `ids` symbolized together (batches);
    the objects' symbols read once for all of them (kept_images)."""
    with kept_images():
        for at, end in batches(stacks.lengths_of(ids)):
            yield at, ids[at:end]


def batches(lengths: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end) of each batch of the stacks of `lengths` (frames) expanded together:
    up to STACKS_AT_ONCE stacks of FRAMES_AT_ONCE frames in all (but for a longer one
    alone)."""
    ends = np.cumsum(lengths)
    at = 0
    while at < len(lengths):
        before = int(ends[at - 1]) if at else 0
        end = int(np.searchsorted(ends, before + FRAMES_AT_ONCE, side="right"))
        end = min(max(end, at + 1), at + STACKS_AT_ONCE)
        yield at, end
        at = end


def peak(cap: WindowLog, heap: int | None = None) -> Peak:
    """The peak of a heap's estimated live bytes, and the timeline interval that holds it."""
    heap = cap.heap if heap is None else heap
    times, values = replay(cap, heap)
    top = int(np.argmax(values))
    tl = cap.log.timeline[cap.log.timeline["heap"] == heap]
    interval = None
    if len(tl):
        k = int(np.argmax(tl["peak"]))
        interval = (interval_starts(cap.log, tl)[k], int(tl["time_ns"][k]))
    return Peak(HEAPS[heap], int(times[top]), int(values[top]), interval)


def interval_starts(log: EventLog, records: np.ndarray) -> list[int]:
    """Where the interval of each of one heap's timeline records began: at the record
    before it, the first at the window's start (or an interval before it, when rotation
    deleted the start)."""
    times = records["time_ns"].tolist()
    first = 0 if log.first_file == 1 else max(times[0] - log.interval_ms * 1_000_000, 0)
    return [first, *times[:-1]]


def live_at(cap: WindowLog, time_ns: int) -> HeapProfile:
    """What was live at a time (cur counts) and allocated up to it (accum counts)."""
    _refuse_outside(cap, time_ns)
    a = cap.allocs
    made = a.start <= time_ns
    return profile_of(cap, made, made & (a.end > time_ns))


def held_at(cap: WindowLog, time_ns: int, which: np.ndarray) -> HeapProfile:
    """The allocations of the mask `which` live at a time, as cur and accum counts alike:
    a profile of the stacks that held them alone, so that what names a few stacks of a
    large log does not symbolize all of them."""
    _refuse_outside(cap, time_ns)
    a = cap.allocs
    held = which & (a.start <= time_ns) & (a.end > time_ns)
    return profile_of(cap, held, held)


def _refuse_outside(cap: WindowLog, time_ns: int) -> None:
    if not 0 <= time_ns <= cap.log.end_ns:
        raise UserError(
            f"{time_ns / MS:.1f} ms is outside the log, which covers 0-"
            f"{cap.log.end_ns / MS:.1f} ms of the window."
        )


def between(cap: WindowLog, first: str, second: str) -> tuple[HeapProfile, Mark, Mark]:
    """Allocations made from the first mark `first` to the next mark `second` after it
    (accum counts), and those of them still live at `second` (cur counts)."""
    start = _find_mark(cap.log, first, after=None)
    end = _find_mark(cap.log, second, after=start)
    a = cap.allocs
    made = (a.start >= start.time_ns) & (a.start < end.time_ns)
    return profile_of(cap, made, made & (a.end > end.time_ns)), start, end


@dataclass
class Step:
    """A step of the log: from its start mark to the next step's start (or the log's end)."""

    label: str  # "step 3", or "'step start' #2" for the occurrences of a mark
    start_ns: int
    end_ns: int


def step(log: EventLog, number: int, mark: str | None = None) -> Step:
    """Step `number`: by its step record (memprof_step(), mem_profiler.step()), or where
    `mark` is given, the range from occurrence `number` of that mark (from 0, as
    --start-index) to the next."""
    if mark is None:
        starts = [m for m in log.marks if m.kind == "step"]
        if not starts:
            raise UserError(
                "the log has no steps (memprof_step(), mem_profiler.step()): count them by a"
                f" mark with --step-mark TEXT; {_known_marks(log)}"
            )
        found = [k for k, m in enumerate(starts) if m.id == number]
        label, known = f"step {number}", f"{starts[0].id}-{starts[-1].id}"
    else:
        starts = occurrences(log, mark)
        if not starts:
            _find_mark(log, mark, after=None)  # says which marks there are
        found = [number] if number < len(starts) else []
        label, known = f"{mark!r} #{number}", f"#0-#{len(starts) - 1}"
    if not found:
        raise UserError(f"no {label} in the log: its steps are {known}.")
    k = found[0]
    end = starts[k + 1].time_ns if k + 1 < len(starts) else log.end_ns
    return Step(label, starts[k].time_ns, end)


def kept_by_step(cap: WindowLog, s: Step) -> HeapProfile:
    """The allocations made during a step (accum counts), and those of them still live
    at its end (cur counts): what the step kept."""
    a = cap.allocs
    made = (a.start >= s.start_ns) & (a.start < s.end_ns)
    return profile_of(cap, made, made & (a.end > s.end_ns))


def window_leaks(cap: WindowLog) -> LeakSet:
    """Sampled allocations of the window still live at its end (the end of the log)."""
    return _leaks(cap, cap.allocs.end == NEVER, f"the window (0.0-{cap.log.end_ns / MS:.1f} ms)")


def mark_range_leaks(cap: WindowLog, text: str, start_index: int) -> LeakSet:
    """msMemScope's leak check: allocations made between occurrence `start_index` and the
    next occurrence of the mark `text` (counting from 0), not freed by the latter."""
    found = occurrences(cap.log, text)
    if not found:
        raise UserError(f"no mark {text!r} in the log; {_known_marks(cap.log)}")
    if start_index + 1 >= len(found):
        raise UserError(
            f"mark {text!r} occurs {len(found)} time(s): start index {start_index}"
            f" needs occurrences {start_index} and {start_index + 1} (from 0)."
        )
    t0, t1 = found[start_index].time_ns, found[start_index + 1].time_ns
    a = cap.allocs
    leaked = (a.start >= t0) & (a.start < t1) & (a.end > t1)
    return _leaks(
        cap, leaked, f"{text!r} #{start_index}-#{start_index + 1} ({t0 / MS:.1f}-{t1 / MS:.1f} ms)"
    )


def occurrences(log: EventLog, text: str) -> list[Mark]:
    """The marks, range starts and steps with this text, in time order."""
    return [m for m in log.marks if m.text == text and m.kind != "range_end"]


def leak_sites(leaks: LeakSet, sym: SymbolizedProfile, full_names: bool = False) -> list[Leak]:
    """The stacks of a symbolized LeakSet as Leak rows, largest estimated bytes first.
    Stacks that read the same once symbolized are one row, as in the gate's reports: a
    Python function's blocks come from several native paths beneath it (the object and its
    buffer), which the folded view shows as one stack (ARCHITECTURE.md, "Python
    programs")."""
    names, nodes = node_frames(sym, full_names=full_names)
    nbytes, objects = sym.value("inuse_space"), sym.value("inuse_objects")
    frames, bounds = nodes.tolist(), sym.offsets.tolist()
    rows: dict[tuple[str, ...], Leak] = {}
    for i in range(len(nbytes)):
        stack = tuple(names[f] for f in frames[bounds[i] : bounds[i + 1]])
        leak = Leak(
            leaks.profile.heap,
            list(stack),
            float(nbytes[i]),
            float(objects[i]),
            int(leaks.profile.cur_objs[i]),
            float(leaks.first_ns[i]) / MS,
            float(leaks.last_ns[i]) / MS,
        )
        same = rows.setdefault(stack, leak)
        if same is not leak:
            same.bytes += leak.bytes
            same.objects += leak.objects
            same.samples += leak.samples
            same.first_ms = min(same.first_ms, leak.first_ms)
            same.last_ms = max(same.last_ms, leak.last_ms)
    return sorted(rows.values(), key=lambda leak: (-leak.bytes, leak.stack))


def _find_mark(log: EventLog, text: str, after: Mark | None) -> Mark:
    """The first mark with this text (not a range end unless `after` is given), or the
    first one after `after`."""
    for m in log.marks:
        if after is None and m.text == text and m.kind != "range_end":
            return m
        if after is not None and m.text == text and m.time_ns >= after.time_ns and m is not after:
            return m
    where = "" if after is None else f" after {after.label!r} ({after.time_ns / MS:.1f} ms)"
    raise UserError(f"no mark {text!r}{where} in the log; {_known_marks(log)}")


def _known_marks(log: EventLog) -> str:
    texts = list(dict.fromkeys(m.text for m in log.marks))
    if not texts:
        return "it has none (marks come from memprof_mark(), mem_profiler.mark(), mstx and NVTX)."
    shown = ", ".join(repr(t) for t in texts[:10])
    return f"its marks are {shown}{', ...' if len(texts) > 10 else ''}."


def _leaks(cap: WindowLog, leaked: np.ndarray, scope: str) -> LeakSet:
    profile = profile_of(cap, leaked, leaked)
    mine = leaked & (cap.allocs.heap == cap.heap)
    stacks, starts = cap.allocs.stack[mine], cap.allocs.start[mine]
    ids, inverse = np.unique(stacks, return_inverse=True)
    first = np.full(len(ids), NEVER, np.int64)
    last = np.full(len(ids), -NEVER, np.int64)
    np.minimum.at(first, inverse, starts)
    np.maximum.at(last, inverse, starts)
    return LeakSet(profile, first, last, scope)


def profile_of(cap: WindowLog, acc: np.ndarray, cur: np.ndarray) -> HeapProfile:
    """The capture's heap as a HeapProfile whose accum counts are the allocations in
    `acc` and cur counts those in `cur` (a subset of acc), one entry per stack, by id."""
    a = cap.allocs
    mine = acc & (a.heap == cap.heap)
    ids, inverse = np.unique(a.stack[mine], return_inverse=True)
    sizes, live = a.size[mine].astype(np.float64), cur[mine]

    def count(weights: np.ndarray) -> np.ndarray:
        return clip_int64(np.bincount(inverse, weights, len(ids)))

    rate = cap.log.rate_of(cap.heap)
    weights = sample_weights(sizes, rate)

    def estimate(values: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, values * weights, len(ids))

    # the stacks as the log's tree holds them, which reports of names merge unexpanded
    tree = cap.log.stacks.tree_of(ids.tolist())
    addrs, offsets = (
        cap.log.stacks.frames_of(ids.tolist())
        if tree is None
        else (np.zeros(0, np.uint64), np.zeros(1, np.int64))
    )
    # the .heap file's profile with these counts, or one of the log alone
    base = (
        HeapProfile(path=cap.log.files[0], rate=rate, pid=cap.log.pid)
        if cap.profile is None
        else cap.profile
    )
    profile = dataclasses.replace(
        base,
        addrs=addrs,
        offsets=offsets,
        cur_objs=count(live.astype(np.float64)),
        cur_bytes=count(sizes * live),
        acc_objs=count(np.ones(len(sizes))),
        acc_bytes=count(sizes),
        estimates=np.column_stack(
            [
                estimate(live.astype(np.float64)),
                estimate(sizes * live),
                estimate(np.ones(len(sizes))),
                estimate(sizes),
            ]
        ),
        # the log's own moments are asked for: not the .heap's, nor when it was taken
        peak=None,
        unreachable=None,
        meta=of_another_moment(base.meta),
        rate=rate,
        heap=cap.heap_name,
    )
    if tree is not None:
        profile.set_stack_tree(tree)
    return profile
