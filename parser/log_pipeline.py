"""The log driver (ARCHITECTURE.md, *The pipeline*): mem_parser's reports of a capture's
event log (its timeline, the moments and spans it replays, its leaks, lifetimes and
device findings, its events as tables and PyTorch's snapshot), and those a file without
a log answers from its own tree. Each profile it builds goes through the heap driver,
parser/pipeline.py, as a .heap file's does."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mem_profiler.core.errors import UserError
from mem_profiler.core.file_names import heap_stem, log_stem, window_files
from mem_profiler.core.profile import (
    HeapProfile,
    at_peak,
    peak_stacks_moment,
)
from mem_profiler.core.units import format_amount
from mem_profiler.parser.log import analysis, export, lifetimes
from mem_profiler.parser.log.analysis import MS, Leak, LeakSet, WindowLog
from mem_profiler.parser.log.device_uses import (
    IDLE_THRESHOLD,
    Inefficiency,
    check_kinds,
    inefficient,
)
from mem_profiler.parser.model.aggregate import node_frames
from mem_profiler.parser.model.categories import (
    OTHER,
    category_names,
    stack_categories,
)
from mem_profiler.parser.model.lifetimes import (
    StackLifetimes,
    lifetime_rows,
    table_lifetimes,
    table_temporary,
)
from mem_profiler.parser.pipeline import (
    Say,
    kept_of,
    load,
    program_of,
    symbolized,
    write_output,
    write_reports,
)
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.report.inefficient import format_inefficient, format_inefficient_json
from mem_profiler.parser.report.leaks import format_leaks, format_leaks_json
from mem_profiler.parser.report.lifetimes import format_lifetimes, format_lifetimes_json
from mem_profiler.parser.report.request import Request
from mem_profiler.parser.report.text import peak_moment
from mem_profiler.parser.report.timeline import Areas, format_timeline
from mem_profiler.parser.report.torch_snapshot import (
    Blocks,
    Frame,
    FramesOf,
    table_snapshot,
    torch_snapshot,
)
from mem_profiler.parser.symbols.python_frames import fold_interpreter_frames
from mem_profiler.parser.symbols.symbolize import (
    SymbolizedProfile,
    mergeable,
)


@dataclass
class LogQuery:
    """Which reports of a capture's event log to write (mem_parser's log options)."""

    timeline: str | None = None  # the path of its SVG
    timeline_top: int | None = None  # its areas: the functions holding most at the peak
    events_csv: str | None = None  # the path of its events as CSV
    events_db: str | None = None  # ... and as an SQLite database
    torch_snapshot: str | None = None  # the path of its CUDA heaps as PyTorch's snapshot
    at_ms: float | None = None
    peak: bool = False
    between: tuple[str, str] | None = None
    compare_steps: tuple[int, int] | None = None  # (N, M): kept by step N - by step M
    step_mark: str | None = None  # steps are the occurrences of this mark, not step records
    window_leaks: bool = False
    mark_leaks: str | None = None
    start_index: int | None = None
    inefficient: bool = False
    inefficient_types: tuple[str, ...] = ()  # device_uses.KINDS; all when empty
    mem_size: int | None = None
    idle_threshold: int | None = None
    temporary: bool = False
    temporary_allocs: int | None = None  # memray's N: freed before N other allocations
    lifetimes: bool = False

    @property
    def reports(self) -> list[str]:
        """The log reports asked for, as options."""
        return [
            flag
            for flag, given in (
                ("--at", self.at_ms is not None),
                ("--peak", self.peak),
                ("--between", self.between is not None),
                ("--compare-steps", self.compare_steps is not None),
                ("--leaks", self.window_leaks),
                ("--mark-leaks", self.mark_leaks is not None),
                ("--inefficient", self.inefficient),
                ("--temporary", self.temporary),
                ("--lifetimes", self.lifetimes),
            )
            if given
        ]

    @property
    def leaks(self) -> bool:
        return self.window_leaks or self.mark_leaks is not None

    @property
    def findings(self) -> bool:
        """A report of its own rows (leaks, inefficient blocks, lifetimes), not of a
        profile."""
        return self.leaks or self.inefficient or self.lifetimes

    @property
    def own_files(self) -> list[str]:
        """The options given that write files of their own, beside any report."""
        given = (
            ("--timeline", self.timeline),
            ("--events-csv", self.events_csv),
            ("--events-db", self.events_db),
            ("--torch-snapshot", self.torch_snapshot),
        )
        return [flag for flag, path in given if path is not None]


def _write_table_peak(request: Request, say: Say, profile: HeapProfile) -> None:
    """--peak of a capture without an event log: what each stack held at the heap's
    peak, as the sampler kept it."""
    peak = at_peak(profile)
    if peak is None:
        raise UserError(
            f"{request.heap_file} records neither an event log nor the stacks at its peak:"
            " capture the program with this mem_profiler (--mode log adds the moments"
            " around the peak)."
        )
    moment = peak_stacks_moment(profile)
    write_reports(
        dataclasses.replace(
            request,
            context=f"Live at the {profile.heap} heap's peak:"
            f" {format_amount(profile.peak_bytes or 0, 'bytes')}{peak_moment(profile)}"
            + (f"; {moment}" if moment else ""),
        ),
        say,
        peak,
    )


# The log options that a file without an event log answers from its own tree.
_TABLE_QUERIES = (
    LogQuery(peak=True),
    LogQuery(lifetimes=True),
    LogQuery(temporary=True),
    LogQuery(temporary=True, temporary_allocs=1),
)


def _write_table_report(query: LogQuery, request: Request, say: Say, profile: HeapProfile) -> None:
    """--peak, --lifetimes, --temporary or --torch-snapshot of a capture without an event
    log, from what the sampler counted of the window."""
    if query.torch_snapshot is not None:
        write_output(query.torch_snapshot, _table_snapshot(request, say))
        if request.outputs:
            write_reports(request, say, profile)
        return
    if query.peak:
        _write_table_peak(request, say, profile)
        return
    if profile.frees is None:
        raise UserError(
            f"{request.heap_file} records no lifetimes: capture the program with this"
            " mem_profiler (a window's file counts its sampled frees by lifetime), or with"
            " --mode log for each allocation's"
        )
    if query.lifetimes:
        _write_lifetimes(request, say, table_lifetimes(profile))
    else:
        _write_temporary(request, say, table_temporary(profile), 1)


def _table_snapshot(request: Request, say: Say) -> bytes:
    """The torch snapshot of the window of request.heap_file, from its cuda_segments and
    cuda heaps' files."""
    files = window_files(heap_stem(request.heap_file))
    profiles: dict[str, HeapProfile] = {
        heap: read_heap(files[heap]) for heap in ("cuda_segments", "cuda") if heap in files
    }

    def blocks(heap: str) -> Blocks | None:
        profile = profiles.get(heap)
        if profile is None or profile.live_blocks is None:
            return None
        frames = _snapshot_frames(profile, request, say)
        live = profile.live_blocks
        return Blocks(
            live.address.astype(np.int64), live.size, [frames[row] for row in live.row.tolist()]
        )

    rate = profiles["cuda"].rate if "cuda" in profiles else 1
    return table_snapshot(blocks("cuda_segments"), blocks("cuda"), rate)


def _write_lifetimes(request: Request, say: Say, table: StackLifetimes) -> None:
    """The lifetimes report (text or JSON) of `table`."""
    sym = load(
        Request(
            binary=program_of(request, table.profile),
            allow_mismatch=request.allow_mismatch,
            sysroot=request.sysroot,
        ),
        table.profile,
    )
    for warning in sym.warnings:
        say(f"warning: {warning}")
    by_lifetime = lifetime_rows(table, sym, request.full_names)
    ((fmt, path),) = request.outputs
    lifetime_report = format_lifetimes_json if fmt == "json" else format_lifetimes
    text = lifetime_report(by_lifetime, table.profile.heap, request.nodecount)
    write_output(path, text.encode("utf-8", "surrogateescape"))


def _write_temporary(request: Request, say: Say, temporary: HeapProfile, others: int) -> None:
    """The reports asked for of the temporary allocations (`temporary`): freed by their
    thread before it made `others` other allocations."""
    write_reports(
        dataclasses.replace(
            request,
            context=f"Temporary allocations of the {temporary.heap} heap: freed by"
            f" their thread before it made {others} other allocation{'s' * (others > 1)}"
            + (" (memray's and heaptrack's temporary allocations)" if others == 1 else ""),
        ),
        say,
        temporary,
    )


def allocation_groups(cap: WindowLog, request: Request) -> tuple[list[str], np.ndarray]:
    """The groups the timeline draws and the gate's category budgets replay, and the one of
    each of the capture's allocations (-1: none, or another heap's): the categories of
    request.categories' rules, of the stacks --focus and --ignore keep; without rules,
    those stacks as one group named after the patterns."""
    rules = request.categories
    assert rules is not None or request.focus is not None or request.ignore is not None
    group = _per_allocation(
        cap,
        request,
        lambda sym: (
            stack_categories(sym, rules)[1]
            if rules is not None
            else np.zeros(len(sym.offsets) - 1, np.int64)
        ),
    )
    return (category_names(rules) if rules is not None else [_kept_name(request)]), group


def allocation_functions(
    cap: WindowLog, request: Request, count: int
) -> tuple[list[str], np.ndarray]:
    """The `count` functions that allocated the most of what the capture's heap held at its
    peak (a stack's innermost node, as the text table's flat rows name them), of the
    stacks --focus and --ignore keep, most first, then OTHER; and the index among them of
    each of the capture's allocations (-1: none, or another heap's)."""
    known: dict[str, int] = {}

    def leaf_functions(sym: SymbolizedProfile) -> np.ndarray:
        names, nodes = node_frames(sym, request.lines, request.full_names)
        ids = np.array([known.setdefault(name, len(known)) for name in names] + [-1], np.int64)
        leaf = np.full(len(sym.offsets) - 1, -1, np.int64)
        some = np.diff(sym.offsets) > 0
        leaf[some] = nodes[sym.offsets[:-1][some]]
        return ids[leaf]

    function = _per_allocation(cap, request, leaf_functions)
    at = analysis.peak(cap).time_ns
    a = cap.allocs
    live = (function >= 0) & (a.start <= at) & (a.end > at)
    held = np.bincount(
        function[live],
        analysis.estimates(a.size[live], cap.log.rate_of(cap.heap)),
        minlength=len(known),
    )
    top = [int(f) for f in np.argsort(-held, kind="stable")[:count] if held[f] > 0]
    rank = np.full(len(known) + 1, len(top), np.int64)  # the rest: OTHER
    rank[top] = np.arange(len(top))
    rank[-1] = -1
    names = list(known)
    return [names[f] for f in top] + [OTHER], rank[function]


def _per_allocation(
    cap: WindowLog, request: Request, of_stacks: Callable[[SymbolizedProfile], np.ndarray]
) -> np.ndarray:
    """A value of each of the capture's allocations: of_stacks' of its stack (-1 where
    --focus and --ignore do not keep it, and for another heap's allocations)."""

    def value_of(sym: SymbolizedProfile) -> np.ndarray:
        values = of_stacks(sym)
        kept = kept_of(sym, request)
        return values if kept is None else np.where(kept, values, -1)

    mine = cap.allocs.heap == cap.heap
    ids, inverse = np.unique(cap.allocs.stack[mine], return_inverse=True)
    every = dataclasses.replace(request, focus=None, ignore=None)
    value = np.full(len(mine), -1, np.int64)
    value[mine] = _of_log_stacks(cap, every, ids.tolist(), value_of)[inverse.reshape(-1)]
    return value


def _of_log_stacks(
    cap: WindowLog,
    request: Request,
    ids: list[int],
    value_of: Callable[[SymbolizedProfile], np.ndarray],
) -> np.ndarray:
    """value_of's value (per stack of a symbolized profile) of each of the log's stacks
    `ids`, given them a batch at a time (analysis.batches): merged by function from the
    log's tree first where it holds them, half the frames of a PyTorch program's
    (symbolize); else each expanded as the log has it."""
    profile = export.tree_profile(cap, ids) if ids else None
    if profile is not None and mergeable(profile):
        sym = symbolized(request, profile, merge=True, expand=False)
        assert sym.tree is not None and sym.profile.merged_from is not None
        parts = analysis.batches(sym.tree.stacks.lengths())
        merged = [value_of(sym.expanded(np.arange(a, b))) for a, b in parts]
        return np.concatenate(merged)[sym.profile.merged_from]
    values = np.zeros(len(ids), np.int64)
    for at, batch in analysis.stack_batches(cap.log.stacks, ids):
        values[at : at + len(batch)] = value_of(load(request, export.stacks_profile(cap, batch)))
    return values


def _timeline_areas(cap: WindowLog, request: Request, top: int | None) -> Areas | None:
    """The areas the timeline draws: the `top` functions, the categories, or the stacks
    --focus and --ignore keep, as one area; None without any of them."""
    kept = _kept_name(request)
    if top is not None:
        names, group = allocation_functions(cap, request, top)
        what = {1: "functions", 2: "function"}.get(len(names), f"{len(names) - 1} functions")
        among = f", among the stacks {kept} keeps" if kept else ""
        return Areas(names, group, f"the {what} that allocated most of the heap's peak{among}")
    if request.categories is None and not kept:
        return None
    names, group = allocation_groups(cap, request)
    if request.categories is None:
        return Areas(names, group, f"the stacks {kept} keeps")
    return Areas(names, group, f"the categories of the stacks {kept} keeps" if kept else None)


def _kept_name(request: Request) -> str:
    """The stacks --focus and --ignore keep, as the patterns say it."""
    return " ".join(
        f"--{what} {pattern.pattern}"
        for what, pattern in (("focus", request.focus), ("ignore", request.ignore))
        if pattern is not None
    )


def write_log_reports(query: LogQuery, request: Request, say: Say) -> None:
    """mem_parser's reports of a capture's event log: the timeline, and what `query` asks
    for (a .heap report beside the timeline where no log report is)."""
    table_query = query in _TABLE_QUERIES or query == LogQuery(torch_snapshot=query.torch_snapshot)
    if table_query and log_stem(request.heap_file) is None:
        profile = read_heap(request.heap_file)
        if not profile.meta.get("log"):
            _write_table_report(query, request, say, profile)
            return
    window_log = analysis.open_window_log(request.heap_file)
    for warning in window_log.warnings:
        say(f"warning: {warning}")
    if query.timeline is not None:
        timeline = format_timeline(
            window_log, request.title, _timeline_areas(window_log, request, query.timeline_top)
        )
        write_output(query.timeline, timeline.encode())
    if query.events_csv is not None or query.events_db is not None:
        write_event_tables(
            window_log,
            say,
            csv_path=query.events_csv,
            db_path=query.events_db,
            program=request.binary,
            allow_mismatch=request.allow_mismatch,
            sysroot=request.sysroot,
        )
    if query.torch_snapshot is not None:
        snapshot = torch_snapshot(window_log, _frame_dicts(window_log, request, say))
        write_output(query.torch_snapshot, snapshot)
    if not query.reports and request.outputs:
        write_reports(request, say, window_log.profile)  # None: no .heap, read_heap says so
    if query.leaks:
        leaks = (
            analysis.window_leaks(window_log)
            if query.window_leaks or query.mark_leaks is None
            else analysis.mark_range_leaks(window_log, query.mark_leaks, query.start_index or 0)
        )
        rows, warnings = rank_leaks(
            leaks,
            program_of(request, leaks.profile),
            allow_mismatch=request.allow_mismatch,
            full_names=request.full_names,
            sysroot=request.sysroot,
        )
        for warning in warnings:
            say(f"warning: {warning}")
        ((fmt, path),) = request.outputs
        formatter = format_leaks_json if fmt == "json" else format_leaks
        write_output(
            path,
            formatter(rows, leaks.scope, leaks.profile.heap, request.nodecount).encode(
                "utf-8", "surrogateescape"
            ),
        )
    elif query.inefficient:
        result = inefficient(
            window_log,
            check_kinds(query.inefficient_types),
            query.mem_size or 0,
            IDLE_THRESHOLD if query.idle_threshold is None else query.idle_threshold,
        )
        for warning in name_findings(result, window_log, request):
            say(f"warning: {warning}")
        ((fmt, path),) = request.outputs
        render = format_inefficient_json if fmt == "json" else format_inefficient
        write_output(path, render(result, request.nodecount).encode("utf-8", "surrogateescape"))
    elif query.peak:
        peak = analysis.peak(window_log)
        interval = (
            ""
            if peak.interval is None
            else (
                f", in the timeline's interval {peak.interval[0] / MS:.1f}-"
                f"{peak.interval[1] / MS:.1f} ms"
            )
        )
        write_reports(
            dataclasses.replace(
                request,
                context=f"Live at the {peak.heap} heap's peak:"
                f" {format_amount(peak.bytes, 'bytes')} at {peak.time_ns / MS:.1f} ms{interval}",
            ),
            say,
            analysis.live_at(window_log, peak.time_ns),
        )
    elif query.at_ms is not None:
        write_reports(
            dataclasses.replace(
                request,
                context=f"Live at {query.at_ms:.1f} ms of the window ({window_log.heap_name} heap)",
            ),
            say,
            analysis.live_at(window_log, round(query.at_ms * MS)),
        )
    elif query.compare_steps is not None:
        new, old = (analysis.step(window_log.log, n, query.step_mark) for n in query.compare_steps)
        write_reports(
            dataclasses.replace(
                request,
                context=f"Kept by {new.label} ({new.start_ns / MS:.1f}-{new.end_ns / MS:.1f} ms)"
                f" less kept by {old.label} ({old.start_ns / MS:.1f}-{old.end_ns / MS:.1f} ms),"
                f" {window_log.heap_name} heap: what the one step allocated and still held at"
                " its end, beyond the other",
                base_profile=analysis.kept_by_step(window_log, old),
            ),
            say,
            analysis.kept_by_step(window_log, new),
        )
    elif query.lifetimes:
        _write_lifetimes(request, say, lifetimes.by_stack(window_log))
    elif query.temporary:
        others = query.temporary_allocs or 1
        _write_temporary(request, say, lifetimes.temporary_profile(window_log, others), others)
    elif query.between is not None:
        profile, start, end = analysis.between(window_log, *query.between)
        write_reports(
            dataclasses.replace(
                request,
                context=f"Allocated from {start.label!r} ({start.time_ns / MS:.1f} ms)"
                f" to {end.label!r} ({end.time_ns / MS:.1f} ms), {window_log.heap_name} heap",
            ),
            say,
            profile,
        )


def write_event_tables(
    cap: WindowLog,
    say: Say,
    *,
    csv_path: str | None = None,
    db_path: str | None = None,
    program: str | None = None,
    allow_mismatch: bool = False,
    sysroot: str | None = None,
) -> None:
    """The log's events as CSV and/or SQLite (log/export.py), stacks named against
    `program` (default: the one the .heap names; raw addresses without either)."""
    program = program or (cap.profile.exe if cap.profile is not None else None)
    request = Request(
        binary=program, lines=True, allow_mismatch=allow_mismatch, sysroot=sysroot, native=True
    )
    said: set[str] = set()

    def name(stacks: HeapProfile) -> SymbolizedProfile:
        # the native column holds the extensions' frames under the Python ones
        sym = fold_interpreter_frames(load(request, stacks))
        for warning in sym.warnings:  # each batch of stacks gives them again
            if warning not in said:
                said.add(warning)
                say(f"warning: {warning}")
        return sym

    texts = export.StackTexts(cap, name if program is not None else None)
    if csv_path is not None:
        write_output(csv_path, export.csv_pieces(cap, texts))
    if db_path is not None:
        write_output(db_path, export.sqlite_pieces(cap, texts, program))


def _frame_dicts(cap: WindowLog, request: Request, say: Say) -> FramesOf:
    """The frames of a log's stacks as PyTorch's snapshots give them (_snapshot_frames),
    named against request.binary (default: the program the .heap names)."""
    program = request.binary or (cap.profile.exe if cap.profile is not None else None)

    def frames_of(ids: list[int]) -> dict[int, list[Frame]]:
        ids = [i for i in ids if i in cap.log.stacks]  # a stack the log lost: its reader said
        if program is None or not ids:
            return {}
        named = dataclasses.replace(request, binary=program)
        return dict(
            zip(ids, _snapshot_frames(export.stacks_profile(cap, ids), named, say), strict=True)
        )

    return frames_of


def _snapshot_frames(profile: HeapProfile, request: Request, say: Say) -> list[list[Frame]]:
    """Each stack's frames as PyTorch's snapshots give them, innermost first (`{filename,
    line, name}`): the Python and the extensions' frames, without the interpreter's (as
    the event tables' columns), named against request.binary (default: the program the
    profile names; none without either)."""
    program = request.binary or profile.exe
    if program is None:
        return [[] for _ in range(len(profile.acc_objs))]
    named = Request(
        binary=program,
        lines=True,
        native=True,
        allow_mismatch=request.allow_mismatch,
        sysroot=request.sysroot,
    )
    sym = fold_interpreter_frames(load(named, profile))
    for warning in sym.warnings:
        say(f"warning: {warning}")
    names = sym.display_names(request.full_names)
    places = [where or ("??", 0) for where in sym.where]
    frames = [
        {"filename": places[loc][0], "line": places[loc][1], "name": names[sym.func_of[loc]]}
        for loc in sym.frames.tolist()
    ]
    bounds = sym.offsets.tolist()
    return [frames[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]


def name_findings(result: Inefficiency, cap: WindowLog, request: Request) -> list[str]:
    """Fill result.names with the function names of the findings' stacks, leaf first,
    named against request.binary (default: the program the .heap names); the
    symbolizer's warnings."""
    program = request.binary or (cap.profile.exe if cap.profile is not None else None)
    if not result.findings:
        return []
    # a stack the log lost is left out, which its reader warned of
    stacks = sorted({f.stack for f in result.findings if f.stack in cap.log.stacks})
    sym = load(
        Request(binary=program, allow_mismatch=request.allow_mismatch, sysroot=request.sysroot),
        export.stacks_profile(cap, stacks),
    )
    names, nodes = node_frames(sym, full_names=request.full_names)
    frames, bounds = nodes.tolist(), sym.offsets.tolist()
    for k, stack in enumerate(stacks):
        result.names[stack] = [names[n] for n in frames[bounds[k] : bounds[k + 1]]]
    return sym.warnings


def rank_leaks(
    leaks: LeakSet,
    binary: str | os.PathLike[str] | None,
    *,
    allow_mismatch: bool = False,
    full_names: bool = False,
    sysroot: str | None = None,
) -> tuple[list[Leak], list[str]]:
    """The leaks by stack, symbolized against `binary`, largest estimated bytes first;
    and the symbolizer's warnings."""
    program = os.fspath(binary) if binary is not None else None
    sym = load(
        Request(binary=program, allow_mismatch=allow_mismatch, sysroot=sysroot), leaks.profile
    )
    return analysis.leak_sites(leaks, sym, full_names), sym.warnings
