"""The one composer of the reports (ARCHITECTURE.md, *The pipeline*): a Request says what
to read and how to show it, and every report goes the same way, each stage once:

    files (read_heap) or a profile built from a log
      → symbolized profile (symbolize; the base subtracted, focus and ignore applied)
      → aggregated view (aggregate, call_graph, flame_tree, leak_sites)
      → rendered output (report_*)

or, for jemalloc's heap_v2 text (report/jeprof.py), the raw profile itself, narrowed to the
stacks --focus and --ignore keep: jeprof symbolizes it itself.

mem_parser, the API's Capture.report, the gate's stacks and the log's leak reports all
call it; no other module symbolizes a profile for a report."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from mem_profiler.core import progress
from mem_profiler.core.errors import BuildIdMismatch, UserError
from mem_profiler.core.escape import visible
from mem_profiler.core.profile import (
    Failure,
    Foreign,
    HeapProfile,
    at_peak,
    stacks_only,
)
from mem_profiler.core.units import format_amount
from mem_profiler.parser.common.atomic import write_file
from mem_profiler.parser.common.sampling import drop_note, python_frames_note
from mem_profiler.parser.elf.object_lookup import started_early
from mem_profiler.parser.log.analysis import MS
from mem_profiler.parser.model.aggregate import FlatCum, aggregate
from mem_profiler.parser.model.call_graph import call_graph
from mem_profiler.parser.model.categories import (
    Rule,
    categorize,
)
from mem_profiler.parser.model.diff import subtract
from mem_profiler.parser.model.flame_tree import collapsed_lines, flame_tree
from mem_profiler.parser.model.focus import keep_stacks, some_stacks, stacks_kept
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.read.pprof import names_every_frame
from mem_profiler.parser.report.dot import format_dot, render_svg
from mem_profiler.parser.report.flame import format_flame_html
from mem_profiler.parser.report.jeprof import format_jeprof
from mem_profiler.parser.report.json_table import format_json
from mem_profiler.parser.report.notes import capture_notes, format_failures, format_foreign
from mem_profiler.parser.report.pprof import format_pprof
from mem_profiler.parser.report.text import format_heaps_text, format_text
from mem_profiler.parser.symbols.symbolize import (
    SymbolizedProfile,
    check_owner_reads_program,
    in_sysroot,
    innermost_python,
    symbolize,
)

# Formats written to -o or stdout, and formats written to a path of their own.
STREAM_FORMATS = ("text", "svg", "collapsed", "json")
FILE_FORMATS = ("flame", "pprof", "jeprof")
# Formats of the raw profile, its addresses as they are: no symbolizing unless --focus or
# --ignore choose its stacks, and no difference (--base) of two.
RAW_FORMATS = ("jeprof",)
# Formats that show functions' names (or lines) alone, no address: stacks that name the
# same may be merged before they are expanded.
NAME_FORMATS = ("text", "svg", "collapsed", "json", "flame")
# Formats of a table by name alone, which sums merged stacks without expanding them.
TABLE_FORMATS = ("text", "json")
GRAPH_NODECOUNT = 80  # nodes in a call graph unless --nodecount says otherwise
# The default table names the peak's holders where the peak is this much above the end.
PEAK_SHOWN_ABOVE = 1.1

Note = TypeVar("Note", bound=Failure | Foreign)
Say = Callable[[str], None]  # one line to the user (mem_parser: on stderr)


@dataclass
class Request:
    """What to read and how to report it."""

    heap_file: str = ""  # the .heap file to read, unless the profile is given to load
    binary: str | None = None  # the program that ran; None: the one the profile names
    base: str | None = None  # report heap_file - base
    base_profile: HeapProfile | None = None  # ... or - this profile, built from a log
    index: str = "inuse_space"
    lines: bool = False  # nodes are source lines
    file_lines: bool = False  # resolve file:line even if nodes are functions (pprof)
    full_names: bool = False  # C++ names with arguments and templates, Rust with hashes
    allow_mismatch: bool = False
    native: bool = False  # Python programs: every native frame, none folded
    sysroot: str | None = None  # the program's machine's root file system (symbolize)
    focus: re.Pattern[str] | None = None
    ignore: re.Pattern[str] | None = None
    nodecount: int | None = None
    nodefraction: float = 0.005
    edgefraction: float = 0.001
    # -t and --json by category (parser/model/categories.py), by these rules
    categories: tuple[Rule, ...] | None = None
    context: str = ""  # a profile built from a log: which moment of it the reports show
    # (format, path) of each report to write; path None: stdout
    outputs: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return os.path.basename(self.binary or "")

    @property
    def notes(self) -> list[str]:
        """What the reports show besides the profile: the moment, base and filters."""
        notes = [self.context] if self.context else []
        notes += [f"Base: {self.base} (values are the difference)"] if self.base else []
        return notes + [
            f"{what}: {pattern.pattern}"
            for what, pattern in (("Focus", self.focus), ("Ignore", self.ignore))
            if pattern is not None
        ]


def load(
    request: Request, profile: HeapProfile | None = None, *, merge: bool = False
) -> SymbolizedProfile:
    """Files → symbolized profile: request.heap_file (or `profile`, built from a log) read
    and symbolized, the base subtracted, focus and ignore applied. `merge`: stacks that
    name the same functions may become one (symbolize), for reports of names alone."""
    profile = _read(request.heap_file) if profile is None else profile
    sym = symbolized(request, profile, merge)
    keep = kept_of(sym, request)
    return sym if keep is None else keep_stacks(sym, keep)


def _read(path: str) -> HeapProfile:
    progress.stage(f"reading {os.path.basename(path)}")
    return read_heap(path)


def kept_of(sym: SymbolizedProfile, request: Request) -> np.ndarray | None:
    """Per stack of sym, whether --focus and --ignore keep it; None without them."""
    return stacks_kept(
        sym, request.focus, request.ignore, lines=request.lines, full_names=request.full_names
    )


def symbolized(
    request: Request, profile: HeapProfile, merge: bool, expand: bool = True
) -> SymbolizedProfile:
    """profile symbolized (merged where `merge`, and not expanded unless `expand`: see
    symbolize), the base subtracted."""
    binary = program_of(request, profile)

    def named(p: HeapProfile) -> SymbolizedProfile:
        return symbolize(
            p,
            binary,
            lines=request.lines or request.file_lines,
            allow_mismatch=request.allow_mismatch,
            # the category rules name native frames too (`<native>`), under Python ones
            native=request.native or request.categories is not None,
            merge=merge,
            expand=expand,
            sysroot=request.sysroot,
        )

    progress.stage(f"symbolizing {os.path.basename(profile.path or 'the profile')}")
    sym = named(profile)
    if request.base_profile is not None:
        sym = subtract(sym, named(request.base_profile))
    elif request.base is not None:
        try:
            old = named(read_heap(request.base))
        except BuildIdMismatch as e:
            raise BuildIdMismatch(f"--base {request.base}: {e}") from None
        sym = subtract(sym, old)
    return sym


def program_of(request: Request, profile: HeapProfile) -> str | None:
    """The program the profile is symbolized against: the one asked for, else the one the
    profile names, else none for a profile that names every frame itself (pprof's);
    UserError if none is known."""
    if request.binary is not None:
        return request.binary
    if names_every_frame(profile):
        return None
    if profile.exe is None and not profile.version:
        return None  # another tool's legacy profile, whose program is not here: addresses
    if profile.exe is None:
        raise UserError(f"{profile.path} does not name the program that ran (no '# exe:' line).")
    exe = in_sysroot(profile.exe, request.sysroot)
    check_owner_reads_program(profile, exe)
    return exe


def write_reports(request: Request, say: Say, profile: HeapProfile | None = None) -> None:
    """mem_parser's report of a .heap file (or of `profile`, built from its log): the
    sampler's and the symbolizer's warnings and the moment said, then each of
    request.outputs written. The
    profile is symbolized only for a report of names, or for --focus and --ignore to
    choose the stacks of a raw one (RAW_FORMATS)."""
    raw = [fmt for fmt, _ in request.outputs if fmt in RAW_FORMATS]
    named = len(raw) < len(request.outputs) or bool(request.focus or request.ignore)
    with started_early(request.heap_file) if named and profile is None else nullcontext():
        _write_reports(request, say, profile, raw, named)


def _write_reports(
    request: Request, say: Say, profile: HeapProfile | None, raw: list[str], named: bool
) -> None:
    """write_reports' work: `raw`, its raw formats; `named`, whether it symbolizes."""
    profile = _read(request.heap_file) if profile is None else profile
    for warning in profile.warnings:
        say(f"warning: {warning}")
    if raw and (request.base or request.base_profile):  # mem_parser refuses it (cmd/)
        raise ValueError(f"{raw[0]} is one profile's samples, not a difference")
    sym, keep = None, None
    if named:
        # the raw outputs take the stacks --focus keeps by their index in `profile`
        merge = not raw and all(fmt in NAME_FORMATS for fmt, _ in request.outputs)
        # the stacks of a table alone stay in their tree unless a step takes their frames
        tables = all(fmt in TABLE_FORMATS for fmt, _ in request.outputs)
        frames_taken = request.focus or request.ignore or request.categories or request.base
        expand = not tables or bool(frames_taken) or request.base_profile is not None
        whole = symbolized(request, profile, merge, expand)
        keep = kept_of(whole, request)
        sym = whole if keep is None else keep_stacks(whole, keep)
        for warning in sym.warnings:
            say(f"warning: {warning}")
    if request.context:
        say(request.context)
    for fmt, path in request.outputs:
        if fmt == "jeprof":
            kept = profile if keep is None else some_stacks(profile, np.flatnonzero(keep))
            write_output(path, format_jeprof(kept))
        else:
            assert sym is not None  # symbolized above for every format but the raw ones
            write_output(path, render(fmt, sym, request))


def write_heaps_text(heaps: list[tuple[str, str]], request: Request) -> None:
    """-t of several heaps of one capture, (heap, file) each, side by side, under the
    lines that say when the capture was taken where that is not a window's end, and
    what a framework pool's cuda heap holds where its blocks were not tracked."""
    syms = [
        (heap, load(dataclasses.replace(request, heap_file=path), merge=True))
        for heap, path in heaps
    ]
    tables = [
        (heap, aggregate(sym, request.index, lines=request.lines, full_names=request.full_names))
        for heap, sym in syms
    ]
    notes = list(dict.fromkeys(note for _, sym in syms for note in capture_notes(sym.profile)))
    ((_, path),) = request.outputs
    text = format_heaps_text(tables, request.nodecount, notes)
    write_output(path, text.encode("utf-8", "surrogateescape"))


def text_table(request: Request) -> str:
    """The profile as the flat/cum table alone (the in-process API's report)."""
    table = aggregate(
        load(request, merge=True), request.index, lines=request.lines, full_names=request.full_names
    )
    return format_text(table, request.nodecount)


def peak_moment(profile: HeapProfile) -> str:
    """`at 12.5 ms` into the window, where the file says."""
    start, at = profile.window_ns[0], profile.meta.get("peak_time_ns", "")
    if start is None or not at.isdigit() or int(at) < start:
        return ""
    return f" at {(int(at) - start) / MS:.1f} ms"


def peak_line(sym: SymbolizedProfile, r: Request) -> str | None:
    """The default table's line on the heap's peak: its bytes and the functions that
    held most of them, where the capture records its stacks and the peak stands above
    what is live at the end."""
    if r.index != "inuse_space" or r.base or r.context or r.focus or r.ignore:
        return None
    at = at_peak(sym.profile)
    if r.categories is not None or at is None:
        return None
    then = aggregate(
        dataclasses.replace(sym, profile=at, values=None),
        r.index,
        lines=r.lines,
        full_names=r.full_names,
    )
    end = float(np.sum(sym.value(r.index)))
    peak = float(sym.profile.peak_bytes or then.total)  # the heap's own figure, exact
    if peak <= PEAK_SHOWN_ABOVE * end:
        return None
    said = f"Peak: {format_amount(peak, 'bytes')}{peak_moment(sym.profile)}"
    if then.total <= 0:  # an event log's window: its events, not the file, hold the peak
        return f"{said} (mem_parser --peak: its table)" if sym.profile.meta.get("log") else None
    held = ", ".join(
        f"{visible(name)} {format_amount(value, 'bytes')}"
        for name, value in zip(then.names[:3], then.flat[:3].tolist(), strict=False)
        if value > 0
    )
    return f"{said}, most in {held} (mem_parser --peak: the whole table)"


def symbolized_notes(
    profile: HeapProfile,
    notes: list[Note],
    binary: str | None,
    allow_mismatch: bool = False,
    full_names: bool = False,
    sysroot: str | None = None,
) -> list[tuple[Note, list[str], int | None]]:
    """Each of the profile's `notes` (its failures or its foreign ranges, or both) with its
    stack's function names, innermost first, and where its innermost Python frame is."""
    if not notes:
        return []
    stacks = [n.stack for n in notes]
    as_samples = stacks_only(
        profile,
        np.array([a for s in stacks for a in s], np.uint64),
        np.concatenate([[0], np.cumsum([len(s) for s in stacks])]).astype(np.int64),
    )
    sym = symbolize(as_samples, binary, allow_mismatch=allow_mismatch, sysroot=sysroot)
    names, node_of = sym.node_names(full_names=full_names)
    python = sym.python_locations()
    named = []
    for i, n in enumerate(notes):
        stack = sym.frames[sym.offsets[i] : sym.offsets[i + 1]].tolist()
        named.append(
            (n, [names[node] for node in node_of[stack].tolist()], innermost_python(stack, python))
        )
    return named


def write_output(path: str | None, content: bytes | Iterable[bytes]) -> None:
    """Write to stdout, or atomically to the file `path`: bytes, or pieces of them (a
    report too large to hold whole)."""
    if path is None:
        progress.clear()
        for piece in [content] if isinstance(content, bytes) else content:
            sys.stdout.buffer.write(piece)
        sys.stdout.flush()
        return
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory; give a file name.")
    progress.stage(f"writing {os.path.basename(path)}")
    write_file(path, content)


def _encoded(lines: Iterable[str]) -> Iterator[bytes]:
    """`lines` encoded, a megabyte or so at a time."""
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size > 1 << 20:
            yield "".join(batch).encode("utf-8", "surrogateescape")
            batch, size = [], 0
    yield "".join(batch).encode("utf-8", "surrogateescape")


def _table(sym: SymbolizedProfile, r: Request) -> FlatCum:
    """-t's and --json's table: by function (or line), or by category."""
    if r.categories is not None:
        return categorize(sym, r.index, r.categories)
    return aggregate(sym, r.index, lines=r.lines, full_names=r.full_names)


def render(fmt: str, sym: SymbolizedProfile, request: Request) -> bytes | Iterator[bytes]:
    """The report in format `fmt` (one of STREAM_FORMATS + FILE_FORMATS but RAW_FORMATS);
    each says when samples were dropped and what that does to its figures."""
    r = request
    dropped = capture_notes(sym.profile) + [
        note for note in [drop_note(sym.profile), python_frames_note(sym.profile)] if note
    ]
    notes = r.notes + dropped
    prof = sym.profile
    if fmt == "text":
        peak = peak_line(sym, r)
        text = format_text(_table(sym, r), r.nodecount, dropped + ([peak] if peak else []))
        foreign = prof.foreign or int(prof.meta.get("foreign_unrecorded", 0))
        # the failures' and foreign ranges' stacks, symbolized in one go
        named = symbolized_notes(
            prof,
            prof.failures + (prof.foreign if foreign else []),
            program_of(r, prof),
            r.allow_mismatch,
            r.full_names,
            r.sysroot,
        )
        stacks = [(stack, python_at) for _, stack, python_at in named]
        failed, ranges = stacks[: len(prof.failures)], stacks[len(prof.failures) :]
        if prof.failures:
            text += format_failures(prof, list(zip(prof.failures, failed, strict=True)))
        if foreign:
            text += format_foreign(prof, list(zip(prof.foreign, ranges, strict=True)))
        return text.encode("utf-8", "surrogateescape")
    if fmt == "json":
        return format_json(
            _table(sym, r),
            prof,
            program=r.binary,
            base=r.base,
            nodecount=r.nodecount,
            foreign=[
                (note, stack)
                for note, stack, _ in symbolized_notes(
                    prof,
                    prof.foreign,
                    program_of(r, prof),
                    r.allow_mismatch,
                    r.full_names,
                    r.sysroot,
                )
            ],
        ).encode("utf-8", "surrogateescape")
    if fmt == "svg":
        graph = call_graph(
            sym,
            r.index,
            lines=r.lines,
            full_names=r.full_names,
            nodefraction=r.nodefraction,
            edgefraction=r.edgefraction,
            nodecount=GRAPH_NODECOUNT if r.nodecount is None else r.nodecount,
        )
        return render_svg(format_dot(graph, r.title, notes, heap=sym.profile.heap))
    if fmt == "pprof":
        return format_pprof(sym, notes, r.full_names)
    if fmt == "collapsed":
        return _encoded(collapsed_lines(sym, r.index, lines=r.lines, full_names=r.full_names))
    if fmt == "flame":
        tree = flame_tree(sym, r.index, lines=r.lines, full_names=r.full_names)
        return format_flame_html(
            tree, r.title, notes, diff=r.base is not None, heap=sym.profile.heap
        ).encode("utf-8", "surrogateescape")
    raise ValueError(f"unknown report format {fmt!r}")
