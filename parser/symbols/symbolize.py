"""Addresses of a HeapProfile -> function names, through MAPPED_LIBRARIES and ELF files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np

from mem_profiler.core.frame_label import Where, frame_label, shown_files
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.arrays import index_of, sorted_unique
from mem_profiler.parser.common.sampling import index_column, stack_values
from mem_profiler.parser.read.context_tree import Levels, StackTree, eval_range, in_evaluation
from mem_profiler.parser.read.pprof import is_named_frame
from mem_profiler.parser.symbols.allocator_frames import (
    allocator_frames,
    cut_allocator_frames,
    is_allocator_function,
)
from mem_profiler.parser.symbols.merged_stacks import NodeKeys, merge_stacks
from mem_profiler.parser.symbols.names import short_name, without_rust_hashes
from mem_profiler.parser.symbols.program_file import (
    check_exe_build_id,
    exe_paths,
    program_mappings,
)
from mem_profiler.parser.symbols.python_frames import (
    IMPORT_FRAME,
    START_UP_FRAME,
    fold_native_frames,
    import_runs,
    interpreter_path,
    is_import_system,
    is_python_frame,
    start_up_folded,
    start_up_frames,
    start_up_marks,
)
from mem_profiler.parser.symbols.resolver import InlinedFrames, Resolver, opened
from mem_profiler.parser.symbols.tree_sums import TreeStacks, location_frames

# The deepest tree merged by function (merged_stacks takes a step per level); the
# sampler's stacks are at most 128 native frames and their Python frames.
MERGE_DEPTH = 4096
# Locations as _with_inlined gives them: (address, function, where and inlined of each
# location, and the first location of each address, or None when nothing is inlined)
Locations = tuple[np.ndarray, np.ndarray, list[Where], np.ndarray, np.ndarray | None]
# Distinct addresses (sorted) and their Locations
Named = tuple[np.ndarray, Locations]
# The frames the Python view adds (python_frames.PARSER_FRAMES), START_UP_FRAME's first
_PARSER_ADDRESSES = np.array([START_UP_FRAME, IMPORT_FRAME], np.uint64)


@dataclass
class SymbolizedProfile:
    """A profile's frames as locations, named: one per distinct address, or where calls
    were inlined at an address, one per function there (the inlined ones first, then the
    function the code is in, which called them).

    Stacks are location ids, leaf first, without the allocator's frames at their leaf end
    (allocator_frames).
    """

    profile: HeapProfile
    addrs: np.ndarray  # uint64 per location: the call-site address symbolized
    # demangled names, `lib.so+0x1a2b` or `0x7f...` when unresolved; a Python function's
    # qualified name (its code's name before 3.11)
    functions: list[str]
    func_of: np.ndarray  # int64 per location: index into functions
    # per location (file, line), if symbolized with lines (a Python frame's always)
    where: list[tuple[str, int] | None]
    frames: np.ndarray  # int64 location ids of all stacks, concatenated
    offsets: np.ndarray  # int64, stack i is frames[offsets[i]:offsets[i+1]]
    warnings: list[str] = field(default_factory=list)
    # float64 (stacks, len(SAMPLE_INDEXES)): the unsampled value of each stack under each
    # sample index; computed from the profile's counts unless given (a diff gives it).
    values: np.ndarray | None = None
    # per function: the name its object gives it (mangled), where it differs from functions'
    system_names: list[str] | None = None
    # bool per location: an inlined call, whose caller is the next location of the stack,
    # at the same address
    inlined: np.ndarray | None = None
    # per function: a Python function's file, which with its name makes the function (the
    # line does not); None for a native function. Empty: every function is native.
    python_files: list[str | None] = field(default_factory=list)
    # a merged profile's stacks as a tree (symbolize with merge), which frames expands
    tree: TreeStacks | None = None

    def __post_init__(self) -> None:
        if self.values is None:
            self.values = stack_values(self.profile)
        if self.system_names is None:
            self.system_names = list(self.functions)
        if self.inlined is None:
            self.inlined = np.zeros(len(self.addrs), bool)
        if not self.python_files:
            self.python_files = [None] * len(self.functions)

    def expanded(self, which: np.ndarray) -> SymbolizedProfile:
        """The stacks `which` (indices, in order) of a merged profile's tree, expanded
        (for one symbolized without `expand`: a part at a time)."""
        assert self.tree is not None and self.values is not None
        frames, offsets = self.tree.expand(which)
        return replace(self, frames=frames, offsets=offsets, values=self.values[which], tree=None)

    def value(self, index: str) -> np.ndarray:
        """The value of each stack under one sample index (see SAMPLE_INDEXES)."""
        assert self.values is not None  # __post_init__ computes it when not given
        return self.values[:, index_column(index)]

    def display_names(self, full_names: bool = False) -> list[str]:
        """Each function's name as the reports show it: short (as jeprof) unless
        full_names; a Python function's whole."""
        if full_names:
            return self.functions
        return [
            name if file is not None else short_name(name)
            for name, file in zip(self.functions, self.python_files, strict=True)
        ]

    def location_labels(
        self,
        lines: bool = False,
        full_names: bool = False,
        shown: dict[str | None, str] | None = None,
    ) -> list[str]:
        """Each location's label (frame_label): its function's, or with lines its source
        line's, its Python file as `shown` has it (default: shown_files of this
        profile's)."""
        if not lines:
            labels = self._function_labels(full_names)
            return [labels[f] for f in self.func_of.tolist()]
        display = self.display_names(full_names)
        shown = self._shown_files() if shown is None else shown
        return [
            frame_label(display[f], where, True, shown.get(self.python_files[f]))
            for f, where in zip(self.func_of.tolist(), self.where, strict=True)
        ]

    def node_names(
        self, lines: bool = False, full_names: bool = False
    ) -> tuple[list[str], np.ndarray]:
        """Node names and the node of each location: a node is a function (short C++
        names unless full_names; a Python function by its name and file), or with lines
        a source line (see frame_label)."""
        if lines:
            labels = self.location_labels(True, full_names)
            files = [self.python_files[f] for f in self.func_of.tolist()]
        else:
            labels, files = self._function_labels(full_names), self.python_files
        ids: dict[tuple[str, str | None], int] = {}
        node = np.array(
            [ids.setdefault(key, len(ids)) for key in zip(labels, files, strict=True)], np.int64
        )
        return [label for label, _ in ids], node if lines else node[self.func_of]

    def _function_labels(self, full_names: bool) -> list[str]:
        shown = self._shown_files()
        return [
            frame_label(name, None, False, shown.get(file))
            for name, file in zip(self.display_names(full_names), self.python_files, strict=True)
        ]

    def _shown_files(self) -> dict[str | None, str]:
        """Each Python file as the labels show it (shown_files)."""
        shown: dict[str | None, str] = {}
        shown.update(shown_files(file for file in self.python_files if file is not None))
        return shown

    def python_locations(self) -> list[bool]:
        """Per location, whether it is a Python function's."""
        return [self.python_files[f] is not None for f in self.func_of.tolist()]

    def stack(self, i: int, lines: bool = False, full_names: bool = False) -> list[str]:
        """Node names of stack i, leaf first (names all nodes: for many stacks, call
        node_names once instead)."""
        names, node_of = self.node_names(lines, full_names)
        return [names[n] for n in node_of[self.frames[self.offsets[i] : self.offsets[i + 1]]]]


def symbolize(
    profile: HeapProfile,
    binary: str | os.PathLike[str] | None,
    *,
    lines: bool = False,
    allow_mismatch: bool = False,
    native: bool = False,
    merge: bool = False,
    merge_lines: bool = False,
    expand: bool = True,
    sysroot: str | None = None,
) -> SymbolizedProfile:
    """Name every frame of `profile`, using `binary` for the program that ran (None for a
    profile that names every frame itself: read.pprof.names_every_frame), and the
    objects of its memory map, found under `sysroot` where given (in_sysroot).

    Raises ElfError if `binary` is not a readable ELF file, and BuildIdMismatch if it
    is not the build that ran (a warning instead with allow_mismatch). `lines` also
    reads DWARF line tables for `where`. Calls inlined at an address (DWARF's
    DW_TAG_inlined_subroutine) become frames of their own. A Python frame's function is
    its name and file, its `where` the line it was running. In a Python program a stack
    with Python frames keeps those alone unless `native` (python_frames.fold_native_frames).

    `merge`: the stacks of a tree-format profile that name the same functions (with
    `lines` or `merge_lines`, at the same lines: with `merge_lines` alone, the Python
    frames' own) become one (merged_stacks), and the symbolized profile's
    profile is the merged one: for the reports of names, which then expand far fewer
    stacks. Its
    `tree` keeps them as a tree; without `expand` they stay only there (frames is empty),
    for a report that only aggregates them.
    """
    exe = opened(os.fspath(binary)) if binary is not None else None
    warnings: list[str] = []
    paths: set[str] = set()  # the paths the profile's maps give the program
    if exe is not None:
        if not profile.mappings:
            profile.mappings = program_mappings(exe)
        paths = exe_paths(profile, exe.basename)
        check_exe_build_id(profile, exe, paths, allow_mismatch, warnings)

    resolver = Resolver(profile, exe, paths, lines, warnings, sysroot)
    python_view = not native and interpreter_path(profile) is not None
    merged = merge and mergeable(profile)
    stacks, known = _named_tree(profile, resolver, python_view, merged)
    if merged:
        assert stacks is not None and known is not None
        profile, locations, merged_stacks, node_address = _merged(
            profile, stacks, known, resolver, python_view, lines or merge_lines
        )
    else:
        locations, frames, offsets = _named_frames(profile, stacks, known, resolver, python_view)
    loc_addrs, func_of, where, is_inlined, first = locations
    functions = resolver.table
    func_alloc = np.array(
        [
            is_allocator_function(without_rust_hashes(name), file)
            for name, file in zip(functions.names, functions.python_files, strict=True)
        ],
        bool,
    )
    alloc = allocator_frames(profile, loc_addrs, func_alloc[func_of])
    tree = None
    if merged:
        tree = TreeStacks(merged_stacks, node_address, first, alloc, python_view)
        if expand:
            frames, offsets = tree.expand()
        else:  # the stacks stay in the tree: only aggregate reads them
            frames, offsets = (
                np.zeros(0, np.int64),
                np.zeros(len(merged_stacks.native) + 1, np.int64),
            )
    else:
        if first is not None and len(frames):
            frames, offsets = location_frames(first, len(loc_addrs), frames, offsets)
        frames, offsets = cut_allocator_frames(frames, alloc[frames], offsets)
    sym = SymbolizedProfile(
        profile,
        loc_addrs,
        functions.names,
        func_of,
        where,
        frames,
        offsets,
        warnings,
        system_names=functions.system_names,
        inlined=is_inlined,
        python_files=functions.python_files,
        tree=tree,
    )
    # merged stacks are folded as they are expanded (TreeStacks)
    sym = fold_native_frames(sym) if python_view and tree is None else sym
    warnings.extend(_stripped_warnings(sym, resolver.stripped))
    return sym


def _stripped_warnings(sym: SymbolizedProfile, stripped: list[tuple[str, str]]) -> list[str]:
    """What each stripped object of `stripped` (path, label) leaves unnamed among the
    frames the stacks of some weight show (every stack's, where none has a weight)."""
    if not stripped:
        return []
    assert sym.values is not None  # SymbolizedProfile.__post_init__ computes them
    weighed = np.any(sym.values != 0, axis=1)
    weighed |= not weighed.any()  # a profile of stacks alone (an event log's) shows them all
    if sym.tree is None:
        shown = np.unique(sym.frames[np.repeat(weighed, np.diff(sym.offsets))])
    else:
        shown = np.unique(sym.tree.node_address[_shown_nodes(sym.tree, weighed, sym.profile)])
        shown = shown if sym.tree.first is None else sym.tree.first[shown]
    names = [sym.functions[f] for f in sym.func_of[shown].tolist()]
    said = []
    for path, label in stripped:
        unnamed = [name for name in names if name.startswith(f"{label}+0x")]
        if unnamed:
            said.append(
                f"{path} has no symbol table and no separate debug file is installed:"
                f" {len(unnamed)} of its code addresses, in {len(set(unnamed))} functions,"
                f" have no name and are shown as where their function starts, {label}+0x…"
                " (its debug symbols, or an unstripped build given with -p, would name them)."
            )
    return said


def _shown_nodes(tree: TreeStacks, weighed: np.ndarray, profile: HeapProfile) -> np.ndarray:
    """Which nodes of a merged tree the stacks `weighed` show: those on their chains, but
    the evaluation loop's where the Python view folds them."""
    stacks = tree.stacks
    up = stacks.tree.parent
    leaves = np.r_[stacks.native[weighed], stacks.python[weighed]]
    shown = Levels(stacks.tree.depth).callers(up, leaves)
    if tree.fold:
        shown &= ~in_evaluation(stacks.tree.address, eval_range(profile))
    return shown


def mergeable(profile: HeapProfile) -> bool:
    """Whether symbolize with `merge` merges the profile's stacks: those of a tree, but
    for the rare deep one, which is expanded (merging takes a step per level)."""
    stacks = profile.stack_tree
    return isinstance(stacks, StackTree) and stacks.tree.depth.max(initial=0) <= MERGE_DEPTH


def _named_tree(
    profile: HeapProfile, resolver: Resolver, python_view: bool, merged: bool
) -> tuple[StackTree | None, Named | None]:
    """The profile's tree of stacks (None for stacks of another form), in the Python view
    with the interpreter's start-up as one frame (python_frames.start_up_folded); and the
    addresses its nodes stand for, named, where they are named at once: for a tree to
    merge, and in the Python view, whose start-up is found by the names."""
    stacks = profile.stack_tree
    if not isinstance(stacks, StackTree):
        return None, None
    if not (merged or python_view):
        return stacks, None
    raw = stacks.tree.address
    callers = _callers(raw)
    added = _PARSER_ADDRESSES if python_view else _PARSER_ADDRESSES[:0]
    uniq, locations = _named(np.r_[callers, raw[sorted_unique(stacks.native)], added], resolver)
    if python_view:
        marks = _address_flags(locations, start_up_marks(resolver.table.names))
        stacks = start_up_folded(stacks, marks[index_of(callers, uniq)]) or stacks
    return stacks, (uniq, locations)


def _named_frames(
    profile: HeapProfile,
    stacks: StackTree | None,
    known: Named | None,
    resolver: Resolver,
    python_view: bool,
) -> tuple[Locations, np.ndarray, np.ndarray]:
    """The locations of the stacks' distinct addresses (as _with_inlined gives them) and
    the stacks' frames (indices among those addresses) and offsets: a tree's expanded, in
    the Python view without the native frames of its stacks with Python frames (a tenth
    of a PyTorch program's), which fold_native_frames folds; other stacks with the
    interpreter's start-up as one frame in the Python view."""
    if stacks is not None:
        addrs, offsets = (stacks.python_view() if python_view else stacks).expand()
        sites = _call_sites(addrs, offsets)
        uniq, locations = known if known is not None else _named(sites, resolver)
        return locations, index_of(sites, uniq), offsets
    addrs, offsets = profile.addrs, profile.offsets
    sites = _call_sites(addrs, offsets)
    added = _PARSER_ADDRESSES if python_view else _PARSER_ADDRESSES[:0]
    uniq, locations = _named(np.r_[sites, added], resolver)
    frames = index_of(sites, uniq)
    if not python_view:
        return locations, frames, offsets
    marks = _address_flags(locations, start_up_marks(resolver.table.names))
    start_up = int(index_of(_PARSER_ADDRESSES[:1], uniq)[0])  # START_UP_FRAME's
    folded = start_up_frames(frames, offsets, marks[frames], is_python_frame(addrs), start_up)
    return locations, *(folded or (frames, offsets))


def _named(addresses: np.ndarray, resolver: Resolver) -> Named:
    """The distinct `addresses` and their locations."""
    uniq = sorted_unique(addresses)
    return uniq, _with_inlined(uniq, *resolver.resolve(uniq))


def _call_sites(addrs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The stacks' addresses as symbolized: every frame but the leaf is a return address,
    stepped back into its call instruction; a Python frame is a record's address, and so
    is a frame the profile names itself."""
    sites = addrs - np.uint64(1)
    sites[offsets[:-1][np.diff(offsets) > 0]] += np.uint64(1)
    records = is_python_frame(addrs) | is_named_frame(addrs)
    sites[records] = addrs[records]
    return sites


def _merged(
    profile: HeapProfile,
    stacks: StackTree,
    named: Named,
    resolver: Resolver,
    python_view: bool,
    lines: bool,
) -> tuple[HeapProfile, Locations, StackTree, np.ndarray]:
    """The profile of its tree's `stacks` merged by function, with `lines` by function
    and the line its locations know (merged_stacks), the locations of the tree's
    addresses (`named`: the addresses and their locations, as _with_inlined gives them),
    the merged stacks and the address each of their nodes stands for (an index among
    those addresses). In the Python view the native frames of stacks with Python frames
    are folded, and each run of the import system's frames is one frame."""
    uniq, locations = named
    raw = stacks.tree.address
    python = is_python_frame(raw)
    leaves = sorted_unique(stacks.native)
    function_key = _function_keys(locations, lines)
    in_eval = in_evaluation(raw, eval_range(profile))
    caller_value = index_of(_callers(raw), uniq)
    # the evaluation loop's frames stay: they place the Python frames
    folded = ~in_eval & ~python & python_view
    if python_view:
        importing = _address_flags(locations, is_import_system(resolver.table.python_files))
        heads, inner = import_runs(stacks.tree, importing[caller_value])
        caller_value[heads] = index_of(np.array([IMPORT_FRAME], np.uint64), uniq)[0]
        folded |= inner
    leaf_value = caller_value.copy()
    leaf_value[leaves] = index_of(raw[leaves], uniq)
    keys = NodeKeys(
        function_key[caller_value] * 2 + in_eval,
        caller_value,
        function_key[leaf_value] * 2 + in_eval,
        leaf_value,
        folded,
    )
    merged, merged_stacks, node_address = merge_stacks(profile, stacks, keys)
    return merged, locations, merged_stacks, node_address


def _callers(addresses: np.ndarray) -> np.ndarray:
    """The call sites of a tree's return addresses (a Python frame, a frame the file
    names and the root's 0 stand as they are)."""
    records = is_python_frame(addresses) | is_named_frame(addresses) | (addresses == 0)
    return np.where(records, addresses, addresses - np.uint64(1))


def _address_flags(locations: Locations, of_function: np.ndarray) -> np.ndarray:
    """Per address of `locations`, the greatest of `of_function` over its locations'
    functions."""
    _, func_of, _, _, first = locations
    at = of_function[func_of]
    return at if first is None or not len(at) else np.maximum.reduceat(at, first)


def _function_keys(locations: Locations, lines: bool) -> np.ndarray:
    """Per address (with their `locations` as _with_inlined gives them) a key
    equal where their locations name the same functions, with `lines` at the same
    lines (where the locations know them)."""
    _, func_of, where, _, first = locations
    if lines:  # a location's function and line, as one dense key
        line_ids: dict[Where, int] = {}
        line_of = np.array([line_ids.setdefault(w, len(line_ids)) for w in where], np.int64)
        func_of = np.unique(func_of * len(line_ids) + line_of, return_inverse=True)[1]
        func_of = func_of.reshape(-1)
    if first is None:
        return func_of
    # An address of one location is keyed by its function; one with inlined calls by its
    # run of functions, numbered after every function.
    keys = func_of[first].astype(np.int64)
    ends = np.r_[first[1:], len(func_of)]
    runs: dict[tuple[int, ...], int] = {}
    functions, base = func_of.tolist(), int(func_of.max(initial=0)) + 1
    inlined = np.flatnonzero(ends - first > 1)
    for i, a, b in zip(
        inlined.tolist(), first[inlined].tolist(), ends[inlined].tolist(), strict=True
    ):
        keys[i] = base + runs.setdefault(tuple(functions[a:b]), len(runs))
    return keys


def _with_inlined(
    addrs: np.ndarray,
    func_of: np.ndarray,
    where: list[Where],
    inlined: dict[int, InlinedFrames],
) -> Locations:
    """Locations of the unique addrs with the calls inlined at them: (address, function,
    where and inlined of each location, and the first location of each address, or None
    when nothing is inlined and locations are the addresses)."""
    if not inlined:
        return addrs, func_of, where, np.zeros(len(addrs), bool), None
    counts = np.ones(len(addrs), np.int64)
    counts[list(inlined)] += [len(chain) for chain in inlined.values()]
    first = np.cumsum(counts) - counts
    outer = first + counts - 1  # the function the code is in comes after its inlined calls
    loc_func = np.empty(int(counts.sum()), np.int64)
    loc_func[outer] = func_of
    loc_where: list[tuple[str, int] | None] = [None] * len(loc_func)
    for at, place in zip(outer.tolist(), where, strict=True):
        loc_where[at] = place
    is_inlined = np.zeros(len(loc_func), bool)
    for i, chain in inlined.items():
        for at, (fid, place) in enumerate(chain, int(first[i])):
            loc_func[at], loc_where[at], is_inlined[at] = fid, place, True
    return np.repeat(addrs, counts), loc_func, loc_where, is_inlined, first


def innermost_python(stack: list[int], python: list[bool]) -> int | None:
    """Where the innermost Python frame of `stack` (locations, leaf first) is, by
    python_locations; None where it has none."""
    return next((k for k, location in enumerate(stack) if python[location]), None)
