"""Python frames in a profile's stacks (ARCHITECTURE.md, "Python programs"): their
addresses, the `# python_frame:` lines that name them, and the view that keeps only
them in the stacks that hold them (frame_label names them in the reports)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from mem_profiler.core.profile import FRAME_BASE, FRAME_END
from mem_profiler.parser.common.arrays import stack_positions, stack_sums, without_frames
from mem_profiler.parser.read.context_tree import eval_range
from mem_profiler.parser.symbols.code_mappings import code_mappings, mapping_index

if TYPE_CHECKING:
    from mem_profiler.core.profile import HeapProfile
    from mem_profiler.parser.symbols.symbolize import SymbolizedProfile


def is_python_frame(addrs: np.ndarray) -> np.ndarray:
    """Which addresses are Python frames."""
    return (addrs >= np.uint64(FRAME_BASE)) & (addrs < np.uint64(FRAME_END))


def interpreter_path(profile: HeapProfile) -> str | None:
    """The object holding the interpreter's evaluation loop (libpython, or the python
    program where it is linked in), from the `# python:` line."""
    evaluation = eval_range(profile)
    if evaluation is None:
        return None
    address = evaluation[0]
    return next((m.path for m in profile.mappings if m.start <= address < m.end and m.path), None)


def interpreter_code(profile: HeapProfile, addrs: np.ndarray) -> np.ndarray:
    """Which of `addrs` are the interpreter's own code (in the object interpreter_path
    names); none where the profile is of no Python program."""
    interpreter = interpreter_path(profile)
    maps = code_mappings(profile)
    in_interpreter = np.array(
        [interpreter is not None and m.path == interpreter for m in maps] + [False]
    )
    return in_interpreter[mapping_index(maps, addrs)]


def fold_native_frames(sym: SymbolizedProfile) -> SymbolizedProfile:
    """The Python view, the default for a Python program: a stack that holds Python
    frames keeps those alone (as memray, tracemalloc and py-spy show a Python program),
    so that what an extension or a library allocates for a Python line is that line's;
    stacks without Python frames keep every frame."""
    if interpreter_path(sym.profile) is None or not len(sym.frames):
        return sym
    python = is_python_frame(sym.addrs)[sym.frames]
    has_python = stack_sums(python, sym.offsets) > 0
    return _folded(sym, np.repeat(has_python, np.diff(sym.offsets)) & ~python)


def fold_interpreter_frames(sym: SymbolizedProfile) -> SymbolizedProfile:
    """The view the gate's leak suppressions judge and the event log's export holds
    (`sym` symbolized with every frame): in each stack that holds Python frames, the
    interpreter's own native frames are folded wherever they lie, and so is everything
    rootward of the outermost Python frame (process and thread start-up); other native
    frames (an extension's, the C library's below a Python frame) stay, for the
    suppressions that name them and the export's native column."""
    if interpreter_path(sym.profile) is None or not len(sym.frames):
        return sym
    loc_interp = interpreter_code(sym.profile, sym.addrs)
    stack_of, position = stack_positions(sym.offsets)
    python = is_python_frame(sym.addrs)[sym.frames]
    # a stack's frames are in order: its outermost Python frame is its last
    at = np.flatnonzero(python)
    last = at[np.r_[stack_of[at][1:] != stack_of[at][:-1], True]] if len(at) else at
    outermost = np.full(len(sym.offsets) - 1, -1, np.int64)
    outermost[stack_of[last]] = position[last]
    has_python = outermost[stack_of] >= 0
    fold = has_python & ((loc_interp[sym.frames] & ~python) | (position > outermost[stack_of]))
    return _folded(sym, fold)


def _folded(sym: SymbolizedProfile, fold: np.ndarray) -> SymbolizedProfile:
    """sym without the frames `fold` marks."""
    if not fold.any():
        return sym
    frames, offsets = without_frames(sym.frames, sym.offsets, fold)
    return dataclasses.replace(sym, frames=frames, offsets=offsets)
