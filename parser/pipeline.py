"""The one composer of the reports (ARCHITECTURE.md, *The pipeline*): a Request says what
to read and how to show it, and every report goes the same way, each stage once:

    files (read_heap) or a profile built from a log
      → symbolized profile (symbolize; the base subtracted, focus and ignore applied)
      → aggregated view (aggregate, call_graph, flame_tree, leak_sites)
      → rendered output (each format's render, named in report/formats.py's FORMATS)

or, for a raw format (jemalloc's heap_v2 text, report/jeprof.py), the profile itself,
narrowed to the stacks --focus and --ignore keep: jeprof symbolizes it itself.

mem_parser, the API's Capture.report, the gate's stacks and the log's leak reports all
call it; no other module symbolizes a profile for a report."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import numpy as np

from mem_profiler.core import progress
from mem_profiler.core.errors import BuildIdMismatch, UserError
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.atomic import write_file
from mem_profiler.parser.elf.object_lookup import started_early
from mem_profiler.parser.model.aggregate import aggregate
from mem_profiler.parser.model.diff import subtract
from mem_profiler.parser.model.focus import keep_stacks, some_stacks, stacks_kept
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.read.pprof import names_every_frame
from mem_profiler.parser.report.formats import Format, Rendering, format_named
from mem_profiler.parser.report.notes import capture_notes
from mem_profiler.parser.report.request import Request
from mem_profiler.parser.report.text import format_heaps_text, format_text
from mem_profiler.parser.symbols.program_file import check_owner_reads_program, in_sysroot
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile, symbolize

Say = Callable[[str], None]  # one line to the user (mem_parser: on stderr)


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
    request.outputs written. The profile is symbolized only for a report of names, or for
    --focus and --ignore to choose the stacks of a raw one (Format.raw)."""
    formats = [(format_named(name), path) for name, path in request.outputs]
    named = any(not fmt.raw for fmt, _ in formats) or bool(request.focus or request.ignore)
    with started_early(request.heap_file) if named and profile is None else nullcontext():
        _write_reports(request, say, profile, formats, named)


def _write_reports(
    request: Request,
    say: Say,
    profile: HeapProfile | None,
    formats: list[tuple[Format, str | None]],
    named: bool,
) -> None:
    """write_reports' work: `formats`, each with its path; `named`, whether it symbolizes."""
    profile = _read(request.heap_file) if profile is None else profile
    for warning in profile.warnings:
        say(f"warning: {warning}")
    raw = [fmt.name for fmt, _ in formats if fmt.raw]
    if raw and (request.base or request.base_profile):  # mem_parser refuses it (cmd/)
        raise ValueError(f"{raw[0]} is one profile's samples, not a difference")
    sym, keep = None, None
    if named:
        # the raw outputs take the stacks --focus keeps by their index in `profile`
        merge = all(fmt.names_only for fmt, _ in formats)
        # the stacks of a table alone stay in their tree unless a step takes their frames
        tables = all(fmt.table for fmt, _ in formats)
        frames_taken = request.focus or request.ignore or request.categories or request.base
        expand = not tables or bool(frames_taken) or request.base_profile is not None
        whole = symbolized(request, profile, merge, expand)
        keep = kept_of(whole, request)
        sym = whole if keep is None else keep_stacks(whole, keep)
        for warning in sym.warnings:
            say(f"warning: {warning}")
    if request.context:
        say(request.context)
    kept = profile if keep is None else some_stacks(profile, np.flatnonzero(keep))
    rendering = Rendering(request, kept, sym, program_of(request, profile) if named else None)
    for fmt, path in formats:
        write_output(path, fmt.render(rendering))


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
