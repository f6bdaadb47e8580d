"""mem_parser's reports of a capture's event log (--mode log): the timeline, what was live
at a time or at the peak, what was allocated between two marks, and leaks.

`add_log_options` adds the options to mem_parser's command: when one of them is given the
command answers with the log report instead of the .heap report (--timeline adds its SVG
to whatever else is asked)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, fields

import click

from mem_profiler.cmd.cli_input import MILLISECONDS, say
from mem_profiler.parser import log_analysis as analysis
from mem_profiler.parser.errors import UserError
from mem_profiler.parser.focus import select_stacks
from mem_profiler.parser.heapfile import HeapProfile
from mem_profiler.parser.log_analysis import MS, LeakSet
from mem_profiler.parser.report_leaks import format_leaks, format_leaks_json
from mem_profiler.parser.reports import FILE_FORMATS, STREAM_FORMATS, Request, render
from mem_profiler.parser.sampling import SAMPLE_INDEXES
from mem_profiler.parser.symbolize import symbolize
from mem_profiler.parser.timeline import format_timeline
from mem_profiler.parser.units import format_amount

# mem_parser's parameter names of the formats, in STREAM_FORMATS and FILE_FORMATS order
_STREAM_FLAGS = ("text", "svg", "collapsed", "json_")
_FILE_PATHS = ("flame", "pprof")
_OPTIONS = (
    click.Option(["--timeline"], metavar="SVG", help="Log mode: write memory over time (each"
                 " heap, RSS, marks, the peak) as an SVG file."),
    click.Option(["--at", "at_ms"], type=MILLISECONDS, metavar="MS",
                 help="Log mode: report what was live MS milliseconds after the window's start."),
    click.Option(["--peak"], is_flag=True,
                 help="Log mode: report what was live at the heap's peak."),
    click.Option(["--between"], nargs=2, metavar="MARK_A MARK_B",
                 help="Log mode: report the allocations made from the first mark MARK_A to the"
                 " next mark MARK_B (alloc_space unless an index is given; --inuse_space: those"
                 " still live at MARK_B)."),
    click.Option(["--leaks", "window_leaks"], is_flag=True,
                 help="Log mode: window leaks, the sampled allocations still live at the end"
                 " of the window, by stack, largest first (text, or --json)."),
    click.Option(["--mark-leaks"], metavar="TEXT",
                 help="Log mode: allocations made between occurrence --start-index and the next"
                 " one of mark TEXT and not freed by it, by stack (msMemScope's check_leaks)."),
    click.Option(["--start-index"], type=click.IntRange(min=0), metavar="I",
                 help="With --mark-leaks: the occurrence the range starts at, from 0 [default 0]."),
)


@dataclass
class LogOptions:
    """The log options of one mem_parser invocation."""

    timeline: str | None = None
    at_ms: float | None = None
    peak: bool = False
    between: tuple[str, str] | None = None
    window_leaks: bool = False
    mark_leaks: str | None = None
    start_index: int | None = None

    @property
    def reports(self) -> list[str]:
        """The log reports asked for, as options."""
        return [flag for flag, given in (
            ("--at", self.at_ms is not None), ("--peak", self.peak),
            ("--between", self.between is not None), ("--leaks", self.window_leaks),
            ("--mark-leaks", self.mark_leaks is not None)) if given]


@dataclass
class _LogRequest(Request):
    """A Request whose reports also say which moment of the log they show."""

    context: str = ""

    @property
    def notes(self) -> list[str]:
        return [self.context, *super().notes]


def add_log_options(command: click.Command) -> None:
    """Give mem_parser's command the log options: an invocation with one of them gets the
    log report (run_log_report), any other runs the command as before."""
    heap_report = command.callback
    assert heap_report is not None

    @functools.wraps(heap_report)
    def callback(**params: object) -> None:
        options = LogOptions(**{f.name: params.pop(f.name) for f in fields(LogOptions)})
        if options == LogOptions():
            heap_report(**params)
        else:
            run_log_report(options, params, heap_report)

    command.params.extend(_OPTIONS)
    command.callback = callback


def run_log_report(options: LogOptions, params: dict, heap_report: Callable[..., None]) -> None:
    """Answer the log options; `params` are mem_parser's other parameters and
    `heap_report` its .heap report, run when --timeline comes with that report's options."""
    reports = options.reports
    if len(reports) > 1:
        raise UserError(f"choose one log report, not {' and '.join(reports)}.")
    if options.start_index is not None and options.mark_leaks is None:
        raise UserError("--start-index goes with --mark-leaks TEXT.")
    heap_report_too = not reports and (any(params[f] for f in _STREAM_FLAGS)
                                       or any(params[p] for p in _FILE_PATHS))
    if not reports and not heap_report_too and params["output"] is not None:
        raise UserError("-o is for a report (-t, --at, ...); --timeline takes its own path.")
    if reports and params["base"] is not None:
        raise UserError("--base compares two .heap files; it does not apply to log reports.")
    cap = analysis.open_capture(params["heap_file"])
    _warn(cap.warnings)
    if options.timeline is not None:
        _write(options.timeline,
               format_timeline(cap, os.path.basename(params["binary"])).encode())
    if heap_report_too:
        heap_report(**params)
    if options.window_leaks:
        _leak_report(analysis.window_leaks(cap), params)
    elif options.mark_leaks is not None:
        _leak_report(analysis.mark_range_leaks(cap, options.mark_leaks,
                                               options.start_index or 0), params)
    elif options.peak:
        peak = analysis.peak(cap)
        interval = "" if peak.interval is None else (
            f", in the timeline's interval {peak.interval[0] / MS:.1f}-"
            f"{peak.interval[1] / MS:.1f} ms")
        _profile_report(analysis.live_at(cap, peak.time_ns), params, "inuse_space",
                        f"Live at the {peak.heap} heap's peak:"
                        f" {format_amount(peak.bytes, 'bytes')} at {peak.time_ns / MS:.1f} ms"
                        f"{interval}")
    elif options.at_ms is not None:
        _profile_report(analysis.live_at(cap, round(options.at_ms * MS)), params, "inuse_space",
                        f"Live at {options.at_ms:.1f} ms of the window ({cap.heap_name} heap)")
    elif options.between is not None:
        profile, start, end = analysis.between(cap, *options.between)
        _profile_report(profile, params, "alloc_space",
                        f"Allocated from {start.label!r} ({start.time_ns / MS:.1f} ms) to"
                        f" {end.label!r} ({end.time_ns / MS:.1f} ms), {cap.heap_name} heap")


def _profile_report(profile: HeapProfile, params: dict, default_index: str,
                    context: str) -> None:
    """Report a profile built from the log as mem_parser reports a .heap file."""
    indexes = [name for name in SAMPLE_INDEXES if params[name]]
    if len(indexes) > 1:
        raise UserError(f"choose one sample index, not {' and '.join('--' + i for i in indexes)}.")
    streams = [fmt for fmt, flag in zip(STREAM_FORMATS, _STREAM_FLAGS, strict=True)
               if params[flag]]
    files = [(fmt, params[p]) for fmt, p in zip(FILE_FORMATS, _FILE_PATHS, strict=True)
             if params[p]]
    if len(streams) > 1:
        raise UserError("choose one of -t, -s, --collapsed, --json for -o/stdout.")
    if not streams and not files:
        streams = ["text"]
    request = _LogRequest(
        binary=params["binary"], heap_file=params["heap_file"],
        index=indexes[0] if indexes else default_index, lines=params["lines"],
        full_names=params["full_names"], file_lines=params["pprof"] is not None,
        allow_mismatch=params["allow_mismatch"], native=params["native"],
        focus=params["focus"], ignore=params["ignore"], nodecount=params["nodecount"],
        nodefraction=params["nodefraction"], edgefraction=params["edgefraction"],
        context=context)
    sym = symbolize(profile, request.binary, lines=request.lines or request.file_lines,
                    allow_mismatch=request.allow_mismatch, native=request.native)
    _warn(sym.warnings)
    sym = select_stacks(sym, request.focus, request.ignore, lines=request.lines,
                        full_names=request.full_names)
    _say(context)
    for fmt, path in [(fmt, params["output"]) for fmt in streams] + files:
        _write(path, render(fmt, sym, request))


def _leak_report(leaks: LeakSet, params: dict) -> None:
    others = [flag for flag in ("svg", "collapsed") if params[flag]] + [
        p for p in _FILE_PATHS if params[p]]
    if others or params["focus"] or params["ignore"]:
        raise UserError("leak reports are text (-t, the default) or --json; --focus, --ignore"
                        " and the other formats apply to --at, --peak and --between.")
    rows, warnings = analysis.rank_leaks(leaks, params["binary"],
                                         allow_mismatch=params["allow_mismatch"],
                                         full_names=params["full_names"])
    _warn(warnings)
    fmt = format_leaks_json if params["json_"] else format_leaks
    _write(params["output"], fmt(rows, leaks.scope, leaks.profile.heap,
                                 params["nodecount"]).encode("utf-8", "surrogateescape"))


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        _say(f"warning: {warning}")


def _say(message: str) -> None:
    from mem_profiler.cmd.mem_parser import PROG  # mem_parser imports this module

    say(PROG, message)


def _write(path: str | None, content: bytes) -> None:
    from mem_profiler.cmd.mem_parser import _write  # mem_parser imports this module

    _write(path, content)
