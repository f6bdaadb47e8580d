"""Python frames in a profile's stacks (ARCHITECTURE.md, "Python programs"): their
addresses, the `# python_frame:` lines that name them, and the view that folds the
interpreter's own native frames (frame_label names them in the reports)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mem_profiler.parser.heapfile import HeapProfile
    from mem_profiler.parser.symbolize import SymbolizedProfile

# A Python frame's address is FRAME_BASE + its record's id: not a canonical x86-64
# address, so no mapping holds it and jeprof shows it as a bare address.
FRAME_BASE = 0x5079000000000000
FRAME_END = FRAME_BASE + 2**32
_FRAME_RE = re.compile(
    r"0x(?P<address>[0-9a-f]{1,16}) (?P<line>-1|\d{1,10})"
    r" (?P<first_line>\d{1,10}) (?P<name>[^\t]*)\t(?P<file>[^\t]*)"
)


@dataclass(frozen=True)
class PythonFrame:
    """What a Python frame was when it was sampled: its function's qualified name
    (the code's name before 3.11), file, first line and the line it was running
    (-1 where the instruction has none)."""

    name: str
    file: str
    line: int
    first_line: int


def parse_frame_line(value: str, unescape) -> tuple[int, PythonFrame]:
    """The address and frame of a `# python_frame:` line's value (name and file
    escaped, a tab between them); ValueError says what is wrong."""
    m = _FRAME_RE.fullmatch(value)
    address = int(m["address"], 16) if m else 0
    if m is None or not FRAME_BASE <= address < FRAME_END:
        raise ValueError(
            "expected '# python_frame: 0x<address> <line> <first line>"
            f" <name>\\t<file>' with an address from 0x{FRAME_BASE:x}, found"
            f" {value[:60]!r}"
        )
    return address, PythonFrame(
        unescape(m["name"], "python_frame"),
        unescape(m["file"], "python_frame"),
        int(m["line"]),
        int(m["first_line"]),
    )


def is_python_frame(addrs: np.ndarray) -> np.ndarray:
    """Which addresses are Python frames."""
    return (addrs >= np.uint64(FRAME_BASE)) & (addrs < np.uint64(FRAME_END))


def interpreter_path(profile: HeapProfile) -> str | None:
    """The object holding the interpreter's evaluation loop (libpython, or the python
    program where it is linked in), from the `# python:` line."""
    eval_address = profile.meta.get("python", "").partition(" ")[2]
    if not eval_address.startswith("0x"):
        return None
    address = int(eval_address, 16)
    return next((m.path for m in profile.mappings if m.start <= address < m.end and m.path), None)


def fold_interpreter_frames(sym: SymbolizedProfile) -> SymbolizedProfile:
    """The Python view, the default for a Python program: in each stack that holds
    Python frames, the interpreter's own native frames are folded wherever they lie,
    and so is everything rootward of the outermost Python frame (process and thread
    start-up). Other native frames (an extension's, the C library's below a Python
    frame) stay."""
    interpreter = interpreter_path(sym.profile)
    if interpreter is None or not len(sym.frames):
        return sym
    from mem_profiler.parser.symbolize import code_mappings, mapping_index

    maps = code_mappings(sym.profile)
    in_interpreter = np.array([m.path == interpreter for m in maps] + [False])
    loc_interp = in_interpreter[mapping_index(maps, sym.addrs)]
    loc_python = is_python_frame(sym.addrs)
    lengths = np.diff(sym.offsets)
    stack_of = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(sym.frames)) - sym.offsets[:-1][stack_of]
    python = loc_python[sym.frames]
    outermost = np.full(len(lengths), -1, np.int64)
    np.maximum.at(outermost, stack_of[python], position[python])
    has_python = outermost[stack_of] >= 0
    fold = has_python & ((loc_interp[sym.frames] & ~python) | (position > outermost[stack_of]))
    if not fold.any():
        return sym
    offsets = np.zeros_like(sym.offsets)
    np.cumsum(np.bincount(stack_of[~fold], minlength=len(lengths)), out=offsets[1:])
    return dataclasses.replace(sym, frames=sym.frames[~fold], offsets=offsets)
