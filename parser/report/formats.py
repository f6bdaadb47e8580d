"""The report formats, one entry each in FORMATS: mem_parser's flags, its help and its
checks of their combinations are made from the table, and the pipeline writes each
format through the `render` of the module its entry names, imported when it is used.
A new format is a module with `render(Rendering) -> bytes | Iterator[bytes]` and an
entry here."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.sampling import drop_note, python_frames_note
from mem_profiler.parser.report.notes import capture_notes
from mem_profiler.parser.report.request import Request

if TYPE_CHECKING:
    from mem_profiler.parser.model.aggregate import FlatCum
    from mem_profiler.parser.symbols.symbolize import SymbolizedProfile


@dataclass(frozen=True)
class Format:
    """One report format, as mem_parser offers it and the pipeline writes it."""

    name: str  # as a Request's outputs name it
    option: str  # mem_parser's flag
    help: str  # mem_parser's help for the flag
    module: str  # the module whose render(Rendering) writes it
    to_file: bool = False  # written to a PATH of its own, not to -o or stdout
    names_only: bool = True  # shows names (or lines) alone: stacks naming the same may merge
    table: bool = False  # a table by name: merged stacks are summed, never expanded
    file_lines: bool = False  # gives each function its file and line, whatever the nodes
    # The raw profile, its addresses as they are: symbolized only where --focus or --ignore
    # choose its stacks, and no difference of two profiles (its counts cannot be negative).
    raw: bool = False
    base_advice: str = ""  # a raw format's way to compare two profiles all the same

    @property
    def param(self) -> str:
        """The flag's parameter name in mem_parser."""
        return f"output_{self.name}"

    def render(self, rendering: Rendering) -> bytes | Iterator[bytes]:
        return importlib.import_module(self.module).render(rendering)


_REPORT = "mem_profiler.parser.report."
FORMATS: tuple[Format, ...] = (
    Format(
        "text",
        "-t",
        "Flat/cum text table, as jeprof --text (MB = 2^20 bytes).",
        _REPORT + "text",
        table=True,
    ),
    Format("svg", "-s", "SVG call graph, drawn by graphviz dot.", _REPORT + "dot"),
    Format(
        "collapsed",
        "--collapsed",
        "Collapsed stacks (`root;...;leaf value`) for flamegraph.pl or speedscope.",
        _REPORT + "collapsed",
    ),
    Format(
        "json",
        "--json",
        "The flat/cum table and metadata as JSON.",
        _REPORT + "json_table",
        table=True,
    ),
    Format(
        "flame",
        "--flame",
        "Write an interactive HTML flame graph to PATH.",
        _REPORT + "flame",
        to_file=True,
    ),
    Format(
        "pprof",
        "--pprof",
        "Write gzipped profile.proto to PATH (go tool pprof, and pprof's UIs).",
        _REPORT + "pprof",
        to_file=True,
        names_only=False,
        file_lines=True,
    ),
    Format(
        "jeprof",
        "--jeprof",
        "Write the samples as jemalloc's heap_v2 text to PATH, for jeprof (raw addresses:"
        " jeprof symbolizes them).",
        _REPORT + "jeprof",
        to_file=True,
        names_only=False,
        raw=True,
        base_advice="write both files with --jeprof and give jeprof the old one with --base"
        " (it matches stacks by address: two captures of one process)",
    ),
)
DEFAULT = "text"  # the report of an invocation that asks for none


def format_named(name: str) -> Format:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise ValueError(f"unknown report format {name!r}")


def options(formats: Sequence[Format], last: str, paths: bool = False) -> str:
    """The formats' flags as a list in words, `-t, -s or --json`; with `paths`, each
    format of a file of its own with its PATH."""
    flags = [f.option + (" PATH" if f.to_file and paths else "") for f in formats]
    return flags[0] if len(flags) == 1 else f"{', '.join(flags[:-1])} {last} {flags[-1]}"


@dataclass
class Rendering:
    """What a format's render is given: the request; the profile as read (for a raw
    format, narrowed to the stacks --focus and --ignore keep); the profile symbolized,
    None for a raw format alone; the program its stacks are named against."""

    request: Request
    profile: HeapProfile
    sym: SymbolizedProfile | None
    program: str | None

    @property
    def named(self) -> SymbolizedProfile:
        assert self.sym is not None, "the pipeline symbolizes for every format but raw ones"
        return self.sym

    @property
    def dropped(self) -> list[str]:
        """When the capture was taken, and what samples it dropped or cut short."""
        prof = self.named.profile
        said = [drop_note(prof), python_frames_note(prof)]
        return capture_notes(prof) + [note for note in said if note]

    @property
    def notes(self) -> list[str]:
        """What a picture says beside its figures: the request's notes, then dropped."""
        return self.request.notes + self.dropped

    def table(self) -> FlatCum:
        """-t's and --json's table: by function (or line), or by category."""
        from mem_profiler.parser.model.aggregate import aggregate
        from mem_profiler.parser.model.categories import categorize

        r = self.request
        if r.categories is not None:
            return categorize(self.named, r.index, r.categories)
        return aggregate(self.named, r.index, lines=r.lines, full_names=r.full_names)
