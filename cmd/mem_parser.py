"""mem_parser: symbolize a .heap file against the binary that ran and report it, or report
a capture's event log (the log options). This file only wires the flags into one request,
every check of their combinations in _request, and calls the composer, parser/pipeline.py
(ARCHITECTURE.md, *The pipeline*)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from mem_profiler.cmd import one_blas_thread  # noqa: F401 (first: it loads numpy)
from mem_profiler.cmd.cli_input import (
    BYTES,
    FRACTION,
    MILLISECONDS,
    Command,
    leave,
    run_command,
    say,
)
from mem_profiler.core import progress
from mem_profiler.core.errors import ProgramNotHere, UserError
from mem_profiler.core.heaps import HEAPS
from mem_profiler.parser import log_pipeline, pipeline
from mem_profiler.parser.common.arrays import return_large_frees
from mem_profiler.parser.common.sampling import SAMPLE_INDEXES
from mem_profiler.parser.log.device_uses import IDLE_THRESHOLD, KINDS
from mem_profiler.parser.log_pipeline import LogQuery
from mem_profiler.parser.model.categories import TORCH_RULES, read_rules
from mem_profiler.parser.read.capture_files import select_files
from mem_profiler.parser.report.formats import DEFAULT, FORMATS, Format, format_named, options
from mem_profiler.parser.report.request import Request
from mem_profiler.parser.symbols.program_file import recorded_program

PROG = "mem_parser"


def _streams() -> list[Format]:
    """The formats written to -o or stdout."""
    return [fmt for fmt in FORMATS if not fmt.to_file]


def _files() -> list[Format]:
    """The formats written to a path of their own."""
    return [fmt for fmt in FORMATS if fmt.to_file]


def _format_options(command: Command) -> Command:
    """A flag for each of FORMATS, in the table's order: a format of its own file takes
    its PATH."""
    for fmt in reversed(FORMATS):
        if fmt.to_file:
            option = click.option(
                fmt.option, fmt.param, metavar="PATH", callback=_path, help=fmt.help
            )
        else:
            option = click.option(fmt.option, fmt.param, is_flag=True, help=fmt.help)
        command = option(command)
    return command


def _regex(ctx: click.Context, param: click.Parameter, value: str | None) -> re.Pattern | None:
    if value is None:
        return None
    try:
        return re.compile(value)
    except re.error as e:
        raise click.BadParameter(f"{value!r} is not a valid regular expression ({e})") from None


def _fraction_option(name: str, default: float, dropped: str) -> Callable[[Command], Command]:
    return click.option(
        name,
        type=FRACTION,
        default=default,
        show_default=True,
        metavar="F",
        help=f"-s: drop {dropped} is below F of the total.",
    )


def _regex_option(name: str, verb: str) -> Callable[[Command], Command]:
    return click.option(
        name,
        metavar="RE",
        callback=_regex,
        help=f"{verb} stacks through a function matching the regular expression RE.",
    )


def _path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and value.startswith("-"):
        raise click.BadParameter(
            f"expected a file name, found {value!r} (write ./{value} for a file named so)"
        )
    return value


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        f"Outputs: one of {options(_streams(), 'or')} goes to -o OUT or stdout;"
        f" {options(_files(), 'and', paths=True)} write their own files, alone or beside it"
        " (e.g. -t --pprof p.pb.gz). --focus and --ignore apply to every output, --base to"
        f" every one but {options([f for f in FORMATS if f.raw], 'and')}."
    ),
)
@click.option(
    "-p",
    "binary",
    metavar="BIN",
    help="The program that ran, where it is not at the"
    " path the file records (a copy elsewhere); by default that path, checked by"
    " build-id.",
)
@click.option(
    "-f",
    "heap_files",
    required=True,
    multiple=True,
    metavar="FILE",
    help="The .heap file to read, or a capture's prefix (/tmp/svc_4242.0001: its "
    "host and device heaps), or a heap profile of jemalloc, gperftools, heapz, growthz "
    "or Go (legacy text). Several with -t: the heaps side by side.",
)
@click.option("--heap", type=click.Choice(HEAPS), help="Of the files given, the one of this heap.")
@_format_options
@click.option("-o", "output", metavar="OUT", help="Write to OUT instead of stdout.")
@click.option("--inuse_space", is_flag=True, help="Live bytes at the dump (default).")
@click.option("--inuse_objects", is_flag=True, help="Live objects at the dump.")
@click.option("--alloc_space", is_flag=True, help="Bytes allocated in the window.")
@click.option("--alloc_objects", is_flag=True, help="Objects allocated in the window.")
@click.option(
    "--base",
    metavar="OLD",
    help="Report FILE - OLD (another .heap of the same"
    " program): growth is positive, shrinkage negative.",
)
@click.option(
    "--lines",
    is_flag=True,
    help="One node per source line (function path:line; Python: function (file.py:42)).",
)
@click.option(
    "--full-names",
    is_flag=True,
    help="Names in full: C++ with arguments and template"
    " arguments, Rust with generics and hashes (default: short names, as jeprof).",
)
@click.option(
    "--categories",
    is_flag=True,
    help="-t and --json by what the memory is for, from each stack's Python frames:"
    " weights, gradients, optimizer_state, activations, other (PyTorch's rules, or"
    " --category-rules).",
)
@click.option(
    "--category-rules",
    metavar="FILE",
    help="--categories by the rules in FILE, one a line: CATEGORY FILE_REGEX FUNCTION_REGEX"
    " (docs/reports.md).",
)
@click.option(
    "--native",
    is_flag=True,
    help="Python programs: every native frame (default: a stack with Python frames shows"
    " those alone).",
)
@click.option(
    "--nodecount",
    type=click.IntRange(min=1),
    metavar="N",
    help="Show N rows (-t, --json) or nodes (-s, default 80).",
)
@_fraction_option("--nodefraction", 0.005, "nodes whose cum")
@_fraction_option("--edgefraction", 0.001, "edges whose weight")
@_regex_option("--focus", "Keep only")
@_regex_option("--ignore", "Drop")
@click.option(
    "--sysroot",
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help="Find the objects the profile names under DIR first: the root file system of the"
    " machine it was taken on (an arm64 board's, copied), as gdb's sysroot.",
)
@click.option(
    "--allow-mismatch",
    is_flag=True,
    help="Symbolize even if BIN is not the build that ran (a warning, not an error).",
)
@click.option(
    "--timeline",
    metavar="SVG",
    help="Log mode: write memory over time (each heap, RSS, marks, the peak) as an SVG file;"
    " with --focus/--ignore, the live bytes of the stacks they keep as an area.",
)
@click.option(
    "--timeline-top",
    type=click.IntRange(1, 6),
    metavar="N",
    help="With --timeline: the N functions that allocated most of the heap's peak (as the"
    " table's rows name them) drawn as areas, each with what it allocated live over time,"
    " the rest as one.",
)
@click.option(
    "--events-csv",
    metavar="CSV",
    help="Log mode: write every event (allocation, free, mark, step) as a row of a CSV"
    " file, with its stacks as text.",
)
@click.option(
    "--events-db",
    metavar="DB",
    help="Log mode: write every event as a row of an SQLite database (the schema is in"
    " docs/log-mode.md).",
)
@click.option(
    "--torch-snapshot",
    metavar="PICKLE",
    callback=_path,
    help="Write the CUDA heaps (segments, tensors and, in log mode, their allocations and"
    " frees) as PyTorch's memory snapshot, for python -m torch.cuda._memory_viz and"
    " pytorch.org/memory_viz.",
)
@click.option(
    "--temporary",
    is_flag=True,
    help="The allocations freed by their thread before it made another (memray's and"
    " heaptrack's temporary allocations), by stack: estimated from a window's sampled"
    " frees, or from an event log of every allocation (-c 1, --device-rate 1).",
)
@click.option(
    "--lifetimes",
    is_flag=True,
    help="Each stack's allocations by how long they lived (under 1 us, 10 us, ... 1 s,"
    " longer, live at the end), and the temporary ones where known; text or --json.",
)
@click.option(
    "--temporary-allocs",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --temporary: freed before N other allocations of their thread [default 1];"
    " above 1, log mode.",
)
@click.option(
    "--at",
    "at_ms",
    type=MILLISECONDS,
    metavar="MS",
    help="Log mode: report what was live MS milliseconds after the window's start.",
)
@click.option("--peak", is_flag=True, help="Log mode: report what was live at the heap's peak.")
@click.option(
    "--between",
    nargs=2,
    metavar="MARK_A MARK_B",
    help="Log mode: report the allocations made from the first mark MARK_A to the"
    " next mark MARK_B (alloc_space unless an index is given; --inuse_space: those"
    " still live at MARK_B).",
)
@click.option(
    "--compare-steps",
    nargs=2,
    type=int,
    metavar="N M",
    help="Log mode: what step N allocated and still held at its end, less what step M"
    " did (inuse_space by default; --alloc_space: what each allocated), by stack.",
)
@click.option(
    "--step-mark",
    metavar="TEXT",
    help="With --compare-steps: steps are the ranges between occurrences of mark TEXT,"
    " numbered from 0, instead of the step records.",
)
@click.option(
    "--leaks",
    "window_leaks",
    is_flag=True,
    help="Log mode: window leaks, the sampled allocations still live at the end"
    " of the window, by stack, largest first (text, or --json).",
)
@click.option(
    "--mark-leaks",
    metavar="TEXT",
    help="Log mode: allocations made between occurrence --start-index and the next"
    " one of mark TEXT and not freed by it, by stack (msMemScope's check_leaks).",
)
@click.option(
    "--start-index",
    type=click.IntRange(min=0),
    metavar="I",
    help="With --mark-leaks: the occurrence the range starts at, from 0 [default 0].",
)
@click.option(
    "--inefficient",
    is_flag=True,
    help="Log mode: device blocks allocated early, freed late or idle between uses,"
    " from the kernel launches, copies and sets recorded (msMemScope's check_inefficient;"
    " text, or --json).",
)
@click.option(
    "--inefficient-type",
    "inefficient_types",
    multiple=True,
    type=click.Choice(KINDS),
    help="With --inefficient: report this kind only (repeat for more) [default: all].",
)
@click.option(
    "--mem-size",
    type=BYTES,
    metavar="SIZE",
    help="With --inefficient: leave out blocks smaller than SIZE (e.g. 1MiB) [default 0].",
)
@click.option(
    "--idle-threshold",
    type=click.IntRange(min=0),
    metavar="N",
    help=f"With --inefficient: idle means more than N launches between two uses"
    f" [default {IDLE_THRESHOLD}].",
)
def cli(heap_files: tuple[str, ...], heap: str | None, **flags: Any) -> None:
    """Report a .heap file: mem_parser [-p BIN] -f FILE [-t|-s|--collapsed|--json] [-o OUT]."""
    chosen = select_files(list(heap_files), heap)
    if flags["binary"] is None and _names_frames(flags):
        try:
            program, build_id = recorded_program(chosen[0][1], flags["sysroot"])
        except ProgramNotHere as e:
            if not e.foreign:
                raise
            _say(f"warning: {e} Its frames are shown as addresses, as pprof shows them.")
            program, build_id = None, None
        if program is not None:  # else a pprof profile, which names its frames, or addresses
            _say(
                f"reading {program}, the program that ran"
                + (f" (build-id {build_id})" if build_id else "")
            )
        flags["binary"] = program
    query = LogQuery(**{f.name: flags.pop(f.name) for f in fields(LogQuery)})
    if query.torch_snapshot is not None:  # the log or the window's files: any file finds them
        chosen = [next((c for c in chosen if c[0] == "cuda"), chosen[0])]
    if len(chosen) > 1:
        pipeline.write_heaps_text(chosen, _side_by_side(chosen, flags, query))
        return
    request = _request(chosen[0][1], flags, query)
    if query == LogQuery():
        pipeline.write_reports(request, _say)
    else:
        log_pipeline.write_log_reports(query, request, _say)


def _request(heap_file: str, flags: dict, query: LogQuery) -> Request:
    """The one report request of an invocation, every check of its flags' combinations
    made: a .heap report, a log report (query), or a .heap report beside a timeline."""
    streams, files = _outputs(flags)
    reports, output = query.reports, flags["output"]
    if len(reports) > 1:
        raise UserError(f"choose one log report, not {' and '.join(reports)}.")
    if query.timeline_top is not None and query.timeline is None:
        raise UserError("--timeline-top N goes with --timeline SVG.")
    if query.start_index is not None and query.mark_leaks is None:
        raise UserError("--start-index goes with --mark-leaks TEXT.")
    if query.step_mark is not None and query.compare_steps is None:
        raise UserError("--step-mark goes with --compare-steps N M.")
    if query.temporary_allocs is not None and not query.temporary:
        raise UserError("--temporary-allocs N goes with --temporary.")
    tuning = (
        query.inefficient_types or query.mem_size is not None or query.idle_threshold is not None
    )
    if tuning and not query.inefficient:
        raise UserError(
            "--inefficient-type, --mem-size and --idle-threshold go with --inefficient."
        )
    if query.own_files and not reports and not streams and not files:
        if output is not None:
            takes = "takes its own path" if len(query.own_files) == 1 else "take their own paths"
            raise UserError(
                f"-o is for a report (-t, --at, ...); {' and '.join(query.own_files)} {takes}."
            )
        return _build(heap_file, flags, "inuse_space", [])  # their files alone
    if reports and flags["base"] is not None:
        raise UserError("--base compares two .heap files; it does not apply to log reports.")
    raw = [fmt for fmt in streams + files if fmt.raw]
    differs = [f.option for f in FORMATS if not f.raw]  # the formats that show a difference
    if raw and flags["base"] is not None:
        raise UserError(
            f"{raw[0].option} writes one profile's samples, whose counts cannot be negative:"
            f" {raw[0].base_advice}, or use --base with {', '.join(differs[:-1])} or"
            f" {differs[-1]}."
        )
    tables = [fmt for fmt in FORMATS if fmt.table]
    if query.findings:
        if any(not fmt.table for fmt in streams + files) or flags["focus"] or flags["ignore"]:
            raise UserError(
                f"{reports[0]} reports are text ({tables[0].option}, the default) or"
                f" {options(tables[1:], 'or')}; --focus, --ignore and the other formats apply"
                " to --at, --peak and --between."
            )
        return _build(heap_file, flags, "inuse_space", [((streams or tables)[0].name, output)])
    if (flags["categories"] or flags["category_rules"]) and (
        any(not fmt.table for fmt in streams + files) or flags["lines"]
    ):
        raise UserError(
            f"--categories is a table of categories: {options(tables, 'or')}, without --lines."
        )
    indexes = [name for name in SAMPLE_INDEXES if flags[name]]
    if len(indexes) > 1:
        raise UserError(f"choose one sample index, not {' and '.join('--' + i for i in indexes)}.")
    if query.compare_steps is not None and raw:
        raise UserError(
            f"{raw[0].option} writes one profile's samples, whose counts cannot be negative;"
            f" the difference of two steps goes to {', '.join(differs[:-1])} or {differs[-1]}."
        )
    if len(streams) > 1:
        raise UserError(
            f"choose one output for -o/stdout: {options(_streams(), 'or')} ("
            f"{format_named(DEFAULT).option}, the default);"
            f" {options(_files(), 'and', paths=True)} write files of their own and may be"
            " added to it or given alone."
        )
    # with no output chosen, the table
    streams = streams or ([] if files else [format_named(DEFAULT)])
    if output is not None and not streams:
        raise UserError(
            f"-o {output} is for {options(_streams(), 'or')}; {options(_files(), 'and')}"
            " take their own path."
        )
    # what a span allocated, and temporary allocations, are all freed or mostly
    default = "alloc_space" if query.between is not None or query.temporary else "inuse_space"
    return _build(
        heap_file,
        flags,
        indexes[0] if indexes else default,
        [(fmt.name, output) for fmt in streams] + [(fmt.name, flags[fmt.param]) for fmt in files],
    )


def _names_frames(flags: dict) -> bool:
    """Whether the invocation symbolizes, and so reads the program: all but raw formats
    alone (--jeprof), which write the addresses as they are."""
    streams, files = _outputs(flags)
    raw_alone = not streams and bool(files) and all(fmt.raw for fmt in files)
    names = ("focus", "ignore", "timeline", "events_csv", "events_db", "torch_snapshot")
    return not raw_alone or any(flags[name] for name in names)


def _side_by_side(chosen: list[tuple[str, str]], flags: dict, query: LogQuery) -> Request:
    """-t of several heaps: each heap's functions, whole (one heap's report takes
    --lines, --focus, --ignore, --base and the log's reports)."""
    streams, files = _outputs(flags)
    names = ("lines", "focus", "ignore", "base", "categories", "category_rules")
    one_heap = ["--" + name.replace("_", "-") for name in names if flags[name]]
    if [fmt.name for fmt in streams] != [DEFAULT] or files or one_heap or query != LogQuery():
        asked = " and ".join(one_heap) or "that report"
        raise UserError(
            f"{len(chosen)} heaps ({', '.join(h for h, _ in chosen)}) go side by"
            f" side only in a plain -t; for {asked} choose one with --heap."
        )
    index = next((i for i in SAMPLE_INDEXES if flags[i]), "inuse_space")
    return _build("", flags, index, [(DEFAULT, flags["output"])])


def _outputs(flags: dict) -> tuple[list[Format], list[Format]]:
    """The formats asked for -o/stdout, and those written to a path of their own."""
    return [f for f in _streams() if flags[f.param]], [f for f in _files() if flags[f.param]]


def _build(heap_file: str, flags: dict, index: str, outputs: list) -> Request:
    return Request(
        heap_file=heap_file,
        binary=flags["binary"],
        base=flags["base"],
        index=index,
        lines=flags["lines"],
        file_lines=any(fmt.file_lines for fmt in _files() + _streams() if flags[fmt.param]),
        full_names=flags["full_names"],
        allow_mismatch=flags["allow_mismatch"],
        native=flags["native"],
        sysroot=flags["sysroot"],
        focus=flags["focus"],
        ignore=flags["ignore"],
        nodecount=flags["nodecount"],
        nodefraction=flags["nodefraction"],
        edgefraction=flags["edgefraction"],
        categories=(
            read_rules(flags["category_rules"])
            if flags["category_rules"]
            else TORCH_RULES
            if flags["categories"]
            else None
        ),
        outputs=outputs,
    )


def _say(message: str) -> None:
    say(PROG, message)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2. Run as the
    command (its arguments from sys.argv), a finished report ends the process."""
    return_large_frees()
    with progress.shown(PROG):
        run_command(cli, PROG, argv)
    if argv is None:
        leave()


if __name__ == "__main__":
    main()
