"""A report's request: what to read and how to show it. The drivers (pipeline.py,
log_pipeline.py) fill it in and each format's `render` reads it (formats.py)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.model.categories import Rule


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
