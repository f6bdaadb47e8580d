"""What mem_parser writes: a profile loaded with its base and filters, rendered in any of
the report formats."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from mem_profiler.parser.aggregate import aggregate
from mem_profiler.parser.diff import subtract
from mem_profiler.parser.errors import BuildIdMismatch
from mem_profiler.parser.flame import flame_tree, format_collapsed
from mem_profiler.parser.focus import select_stacks
from mem_profiler.parser.graph import call_graph
from mem_profiler.parser.heapfile import read_heap
from mem_profiler.parser.report_dot import format_dot, render_svg
from mem_profiler.parser.report_flame import format_flame_html
from mem_profiler.parser.report_json import format_json
from mem_profiler.parser.report_notes import format_failures, format_foreign, symbolized
from mem_profiler.parser.report_pprof import format_pprof
from mem_profiler.parser.report_text import format_heaps_text, format_text
from mem_profiler.parser.sampling import drop_note
from mem_profiler.parser.symbolize import SymbolizedProfile, symbolize

# Formats written to -o or stdout, and formats written to a path of their own.
STREAM_FORMATS = ("text", "svg", "collapsed", "json")
FILE_FORMATS = ("flame", "pprof")
GRAPH_NODECOUNT = 80  # nodes in a call graph unless --nodecount says otherwise


@dataclass
class Request:
    """What to load and how to report it."""

    binary: str
    heap_file: str
    base: str | None = None  # report heap_file - base
    index: str = "inuse_space"
    lines: bool = False  # nodes are source lines
    file_lines: bool = False  # resolve file:line even if nodes are functions (pprof)
    full_names: bool = False  # C++ names with arguments and templates, Rust with hashes
    allow_mismatch: bool = False
    native: bool = False  # Python programs: every native frame, none folded
    focus: re.Pattern[str] | None = None
    ignore: re.Pattern[str] | None = None
    nodecount: int | None = None
    nodefraction: float = 0.005
    edgefraction: float = 0.001

    @property
    def title(self) -> str:
        return os.path.basename(self.binary)

    @property
    def notes(self) -> list[str]:
        """What the reports show besides the profile: base and filters."""
        notes = [f"Base: {self.base} (values are the difference)"] if self.base else []
        return notes + [f"{what}: {pattern.pattern}" for what, pattern in (
            ("Focus", self.focus), ("Ignore", self.ignore)) if pattern is not None]


def load(request: Request) -> SymbolizedProfile:
    """Read and symbolize the heap file, subtract the base, apply focus and ignore."""
    lines = request.lines or request.file_lines
    sym = symbolize(read_heap(request.heap_file), request.binary, lines=lines,
                    allow_mismatch=request.allow_mismatch, native=request.native)
    if request.base is not None:
        try:
            old = symbolize(read_heap(request.base), request.binary, lines=lines,
                            allow_mismatch=request.allow_mismatch, native=request.native)
        except BuildIdMismatch as e:
            raise BuildIdMismatch(f"--base {request.base}: {e}") from None
        sym = subtract(sym, old)
    return select_stacks(sym, request.focus, request.ignore, lines=request.lines,
                         full_names=request.full_names)


def render_heaps_text(requests: list[tuple[str, Request]]) -> bytes:
    """-t of several heaps of one capture, side by side."""
    tables = [(heap, aggregate(load(r), r.index, lines=r.lines, full_names=r.full_names))
              for heap, r in requests]
    return format_heaps_text(tables, requests[0][1].nodecount).encode("utf-8", "surrogateescape")


def render(fmt: str, sym: SymbolizedProfile, request: Request) -> bytes:
    """The report in format `fmt` (one of STREAM_FORMATS + FILE_FORMATS); each says
    when samples were dropped and what that does to its figures."""
    r = request
    dropped = [note for note in [drop_note(sym.profile)] if note]
    notes = r.notes + dropped
    prof = sym.profile
    if fmt == "text":
        table = aggregate(sym, r.index, lines=r.lines, full_names=r.full_names)
        text = format_text(table, r.nodecount, dropped)
        if prof.failures:
            text += format_failures(prof, symbolized(
                prof, prof.failures, r.binary, r.allow_mismatch, r.full_names))
        if prof.foreign or int(prof.meta.get("foreign_unrecorded", 0)):
            text += format_foreign(prof, symbolized(
                prof, prof.foreign, r.binary, r.allow_mismatch, r.full_names))
        return text.encode("utf-8", "surrogateescape")
    if fmt == "json":
        table = aggregate(sym, r.index, lines=r.lines, full_names=r.full_names)
        return format_json(table, prof, program=r.binary, base=r.base, nodecount=r.nodecount,
                           foreign=symbolized(prof, prof.foreign, r.binary, r.allow_mismatch,
                                              r.full_names)).encode("utf-8", "surrogateescape")
    if fmt == "svg":
        graph = call_graph(sym, r.index, lines=r.lines, full_names=r.full_names,
                           nodefraction=r.nodefraction, edgefraction=r.edgefraction,
                           nodecount=GRAPH_NODECOUNT if r.nodecount is None else r.nodecount)
        return render_svg(format_dot(graph, r.title, notes, heap=sym.profile.heap))
    if fmt == "pprof":
        return format_pprof(sym, notes, r.full_names)
    if fmt == "collapsed":
        return format_collapsed(sym, r.index, lines=r.lines, full_names=r.full_names).encode(
            "utf-8", "surrogateescape")
    if fmt == "flame":
        tree = flame_tree(sym, r.index, lines=r.lines, full_names=r.full_names)
        return format_flame_html(tree, r.title, notes, diff=r.base is not None,
                                 heap=sym.profile.heap).encode(
            "utf-8", "surrogateescape")
    raise ValueError(f"unknown report format {fmt!r}")
