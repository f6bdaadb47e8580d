"""Python frames in a profile's stacks (ARCHITECTURE.md, "Python programs"): their
addresses, the `# python_frame:` lines that name them, and the view that keeps only
them in the stacks that hold them (frame_label names them in the reports), with the
interpreter's start-up as one frame and each run of the import system's frames as one."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from mem_profiler.core.profile import FRAME_BASE, FRAME_END, NAMED_END
from mem_profiler.parser.common.arrays import stack_positions, stack_sums, without_frames
from mem_profiler.parser.read.context_tree import GROUP_END, StackTree, Tree, eval_range
from mem_profiler.parser.symbols.code_mappings import code_mappings, mapping_index

if TYPE_CHECKING:
    from mem_profiler.core.profile import HeapProfile
    from mem_profiler.parser.symbols.symbolize import SymbolizedProfile


# In the Python view, the interpreter's start-up is one frame of this name, at an
# address the parser gives it (the last of those a file may name itself: no file names
# 2^32 frames): the stacks that pass one of _START_UP_FUNCTIONS (the core types, the
# codecs, `site` and what it imports) and those of no Python frame under the program's
# main (reading and compiling the program). --native keeps their frames.
START_UP_FRAME = NAMED_END - 1
START_UP_NAME = "[Python start-up]"
_START_UP_FUNCTIONS = frozenset(
    {
        "pymain_init",
        "Py_InitializeFromConfig",
        "Py_InitializeEx",
        "Py_Initialize",
        "_Py_InitializeMain",
        "Py_PreInitialize",
        "Py_PreInitializeFromArgs",
        "Py_PreInitializeFromBytesArgs",
        "_Py_PreInitializeFromPyArgv",
        "_PyRuntime_Initialize",
    }
)
_MAIN_FUNCTIONS = frozenset({"Py_BytesMain", "Py_Main"})
# In the Python view, each run of the import system's frames (between an `import` line
# and the `<module>` it runs) is one frame of this name, at an address the parser gives
# it: what the import machinery allocates itself (the module's code, its dict) is its.
IMPORT_FRAME = NAMED_END - 2
IMPORT_NAME = "[Python import]"
_IMPORT_FILES = frozenset(
    {"<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>"}
)
# The frames the Python view adds, by address
PARSER_FRAMES = {START_UP_FRAME: START_UP_NAME, IMPORT_FRAME: IMPORT_NAME}


def start_up_marks(functions: list[str]) -> np.ndarray:
    """Per (named) function: 2 for a start-up function, 1 for the program's main, else 0
    (an address of several functions, some inlined, takes the greatest)."""
    marks = [
        2 if name in _START_UP_FUNCTIONS else 1 if name in _MAIN_FUNCTIONS else 0
        for name in functions
    ]
    return np.array(marks, np.int8)


def is_import_system(python_files: list[str | None]) -> np.ndarray:
    """Which of the functions (by their Python files) are the import system's."""
    return np.array([file in _IMPORT_FILES for file in python_files] + [False])[:-1]


def import_runs(tree: Tree, importing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per node of `tree`, given which are the import system's frames (`importing`):
    whether it is the outermost of a run of them in its Python chain (its caller, past
    the ends of groups, is not one), and whether it is one of the rest."""
    caller = tree.parent.astype(np.int64)
    ends = tree.address == np.uint64(GROUP_END)
    while ends[caller].any():
        caller = np.where(ends[caller], tree.parent[caller], caller)
    inner = importing & importing[caller]
    return importing & ~inner, inner


def _is_start_up(start_up: np.ndarray, main: np.ndarray, python: np.ndarray) -> np.ndarray:
    """Per stack, from how many frames of it are start-up functions, the program's main
    and Python frames: whether it is the interpreter's start-up."""
    return (start_up > 0) | ((main > 0) & (python == 0))


def start_up_folded(stacks: StackTree, marks: np.ndarray) -> StackTree | None:
    """`stacks` with each of the interpreter's start-up (by the start_up_marks of its
    native nodes, `marks`) ending at one node of its own, START_UP_FRAME's, under the
    root (None where there is none)."""
    tree = stacks.tree
    start_up, main = tree.path_counts([marks == 2, marks == 1], int(tree.depth.max(initial=0)))
    at = stacks.native
    under = _is_start_up(start_up[at], main[at], tree.python_frames(stacks.python))
    if not under.any():
        return None
    node = len(tree.parent)
    grown = Tree(np.r_[tree.parent, 0], np.r_[tree.address, np.uint64(START_UP_FRAME)])
    native = np.where(under, node, stacks.native)
    return StackTree(grown, native, np.where(under, 0, stacks.python), stacks.evaluation)


def start_up_frames(
    frames: np.ndarray, offsets: np.ndarray, marks: np.ndarray, python: np.ndarray, frame: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The stacks (`frames`, `offsets`) with each of the interpreter's start-up (by the
    start_up_marks and the Python frames among its frames, `marks` and `python`) the one
    `frame` (None where there is none)."""
    sums = [stack_sums(mask, offsets) for mask in (marks == 2, marks == 1, python)]
    under = _is_start_up(*sums)
    if not under.any():
        return None
    lengths = np.where(under, 1, np.diff(offsets))
    keep = ~np.repeat(under, np.diff(offsets))
    out = np.full(int(lengths.sum()), frame, frames.dtype)
    out[np.repeat(~under, lengths)] = frames[keep]
    return out, np.r_[0, np.cumsum(lengths)].astype(offsets.dtype)


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
    so that what an extension or a library allocates for a Python line is that line's,
    each run of the import system's frames as one IMPORT_FRAME; stacks without Python
    frames keep every frame."""
    if interpreter_path(sym.profile) is None or not len(sym.frames):
        return sym
    python = is_python_frame(sym.addrs)[sym.frames]
    has_python = stack_sums(python, sym.offsets) > 0
    sym = _folded(sym, np.repeat(has_python, np.diff(sym.offsets)) & ~python)
    importing = is_import_system(sym.python_files)[sym.func_of[sym.frames]]
    if not importing.any():
        return sym
    stack_of, _ = stack_positions(sym.offsets)
    caller_too = np.r_[importing[1:] & (stack_of[1:] == stack_of[:-1]), False]
    sym, at = _with_frame(sym, IMPORT_FRAME)
    frames = np.where(importing, at, sym.frames)
    return _folded(dataclasses.replace(sym, frames=frames), importing & caller_too)


def _with_frame(sym: SymbolizedProfile, address: int) -> tuple[SymbolizedProfile, int]:
    """sym with a location of the frame the parser adds at `address` (PARSER_FRAMES), and
    that location."""
    found = np.flatnonzero(sym.addrs == np.uint64(address))
    if len(found):
        return sym, int(found[0])
    name = PARSER_FRAMES[address]
    functions = sym.functions if name in sym.functions else [*sym.functions, name]
    system_names = sym.system_names or sym.functions
    extra = len(functions) - len(sym.functions)
    grown = dataclasses.replace(
        sym,
        addrs=np.r_[sym.addrs, np.uint64(address)],
        functions=functions,
        func_of=np.r_[sym.func_of, functions.index(name)],
        where=[*sym.where, None],
        system_names=[*system_names, *functions[len(functions) - extra :]],
        inlined=np.r_[sym.inlined, False],
        python_files=[*sym.python_files, *[None] * extra],
    )
    return grown, len(sym.addrs)


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
