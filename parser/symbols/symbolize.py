"""Addresses of a HeapProfile -> function names, through MAPPED_LIBRARIES and ELF files."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from mem_profiler.core import progress
from mem_profiler.core.errors import BuildIdMismatch, ElfError, ProgramNotHere, UserError
from mem_profiler.core.frame_label import Where, frame_label, shown_files
from mem_profiler.core.input_files import open_regular, other_owner
from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.profile import HeapProfile, NamedFrame
from mem_profiler.core.user_paths import NotReadableFor
from mem_profiler.parser.common.arrays import index_of, sorted_unique
from mem_profiler.parser.common.sampling import index_column, stack_values
from mem_profiler.parser.elf.image import ElfImage, demangle
from mem_profiler.parser.elf.object_lookup import ObjectLookup, look_up_all
from mem_profiler.parser.read.context_tree import Levels, StackTree, eval_range, in_evaluation
from mem_profiler.parser.read.heap_file import read_heap, read_heap_header
from mem_profiler.parser.read.pprof import is_named_frame, names_every_frame
from mem_profiler.parser.symbols.allocator_frames import (
    allocator_frames,
    cut_allocator_frames,
    is_allocator_function,
)
from mem_profiler.parser.symbols.code_mappings import code_mappings, mapping_index
from mem_profiler.parser.symbols.merged_stacks import NodeKeys, merge_stacks
from mem_profiler.parser.symbols.python_frames import (
    IMPORT_FRAME,
    PARSER_FRAMES,
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
from mem_profiler.parser.symbols.tree_sums import TreeStacks, location_frames

# The deepest tree merged by function (merged_stacks takes a step per level); the
# sampler's stacks are at most 128 native frames and their Python frames.
MERGE_DEPTH = 4096
InlinedFrames = list[tuple[int, Where]]  # (function id, where) of inlined calls, innermost first
# Locations as _with_inlined gives them: (address, function, where and inlined of each
# location, and the first location of each address, or None when nothing is inlined)
Locations = tuple[np.ndarray, np.ndarray, list[Where], np.ndarray, np.ndarray | None]
# Distinct addresses (sorted) and their Locations
Named = tuple[np.ndarray, Locations]
# The frames the Python view adds (python_frames.PARSER_FRAMES), START_UP_FRAME's first
_PARSER_ADDRESSES = np.array([START_UP_FRAME, IMPORT_FRAME], np.uint64)
_PARSER_RECORDS = {address: NamedFrame(name, "", 0) for address, name in PARSER_FRAMES.items()}

# An argument list: never C++'s `(anonymous namespace)`, nor a group that starts the name
# or follows a single `:`, as in the names pprof profiles of other languages give
# (Node's `file.js:(anonymous:L#1:C#1):1`, `:(external):0`).
# (Each pattern starts with its bracket, the conditions on what comes before looking
# back past it: the engine then finds the bracket as a literal, which in the long names
# of C++ templates costs a fraction of trying the conditions at each character.)
_ARGS_RE = re.compile(
    r"\((?<!^\()(?<!^:\()(?<![^:]:\()(?!anonymous namespace\))[^()]*\)(\s*const)?"
)
# Template or generic arguments (with Rust's `::` before them), but not a Rust qualified
# path: the one that starts a name (`<T as Trait>::f`, `<<T as A>::U as B>::f`) or a
# trait's (`<u32 as <[_]>::to_vec_in::ConvertVec>::to_vec`), nor a group after a single
# `:` (`file.py:<module>:1`).
_TEMPLATE_RE = re.compile(
    r"(?:::<(?<!^::<)(?<!^<::<)(?<! as ::<)(?<!^:::<)(?<![^:]:::<)"
    r"|<(?<!^<)(?<!^<<)(?<! as <)(?<!^:<)(?<![^:]:<))[^<>]*>"
)
# Rust's legacy hash (`::h` and 16 hex digits at the end) and v0 crate disambiguators.
_RUST_HASH_RE = re.compile(r"::h[0-9a-f]{16}$|\[(?<=\w\[)[0-9a-f]{1,16}\]")
# A return type left in front (`void ns::f`, `double* build`): what comes before the
# name that ends the text, after a space, `*` or `&`. The name is found in the reversed
# text, from its start: a search for it at the end would try each of its characters.
_NAME_REVERSED_RE = re.compile(r"[\w:~.$]+")
# ... and an operator's (`std::ostream& std::operator<<`), but not the `new` of
# `operator new`.
_OPERATOR_RE = re.compile(r"\boperator\b")
_OPERATOR_RETURN_TYPE_RE = re.compile(r"^.*?[\s*&]+(?=(?:[\w~.$]+::)*operator\b)")


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


class FunctionTable:
    """Functions, each added once: its name (demangled), the name its object gives it and,
    for a Python function, its file."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.system_names: list[str] = []
        self.python_files: list[str | None] = []
        self._ids: dict[tuple[str, str | None], int] = {}

    def ids(
        self,
        names: list[str],
        system_names: list[str] | None = None,
        python_files: list[str | None] | None = None,
    ) -> list[int]:
        """The id of each function, added on first sight (system name: the name itself
        unless given; native unless its Python file is given)."""
        out = []
        files = python_files or [None] * len(names)
        known = self._ids
        for name, system, file in zip(names, system_names or names, files, strict=True):
            i = known.get((name, file))
            if i is None:
                i = known[name, file] = len(self.names)
                self.names.append(name)
                self.system_names.append(system)
                self.python_files.append(file)
            out.append(i)
        return out


def short_name(name: str) -> str:
    """Drop argument lists, template arguments and return types, as jeprof's
    ShortFunctionName (and pprof's default demangling) show C++ names; and Rust's hashes
    and generic arguments."""
    if not any(c in name for c in "(<[ ") and "::h" not in name or ".(" in name:
        return name  # a C name, another with nothing to drop, or Go's main.(*T).method
    name = _without_rust_hashes(name)
    for pattern, bracket in ((_ARGS_RE, "("), (_TEMPLATE_RE, "<")):
        while bracket in name:  # innermost groups first, then those they were in
            name, removed = pattern.subn("", name)
            if not removed:
                break
    if not any(c in name for c in " *&"):
        return name.strip()  # no return type left in front
    return _without_return_type(name).strip()


def _without_return_type(name: str) -> str:
    if _OPERATOR_RE.search(name):
        return _OPERATOR_RETURN_TYPE_RE.sub("", name)
    found = _NAME_REVERSED_RE.match(name[::-1])
    start = len(name) - found.end() if found else 0
    if start > 0 and (name[start - 1].isspace() or name[start - 1] in "*&"):
        return name[start:]
    return name


def _without_rust_hashes(name: str) -> str:
    # The legacy hash can only be the name's last 19 characters.
    if "[" not in name and name[-19:-16] != "::h":
        return name
    return _RUST_HASH_RE.sub("", name)


def read_for(profile: HeapProfile) -> int | None:
    """The user a profile is read for, where not the reader (root reading a user's file
    or a user's process): only what they may read is read for it."""
    if profile.owner is not None:
        return profile.owner if profile.owner != os.geteuid() else None
    return other_owner(profile.path)


def check_owner_reads_program(profile: HeapProfile, exe: str) -> None:
    """UserError when the program a profile names is one its owner, another user than
    the reader, may not read: -p is then the reader's own choice to make."""
    owner = read_for(profile)
    if owner is None:
        return
    try:
        open_regular(exe, "a program", UserError, for_uid=owner).close()
    except NotReadableFor:
        raise UserError(
            f"{exe} is not readable by the owner of {profile.path} (uid {owner}):"
            " name the program with -p to read its symbols."
        ) from None
    except OSError:
        return  # said as the program that is not there, or not readable


def in_sysroot(path: str, sysroot: str | None) -> str:
    """Where an object the profile names is on this machine: under `sysroot` (the
    program's root file system, copied from the machine it ran on) where it is there,
    else at its own path."""
    if sysroot is None or not path.startswith("/"):
        return path
    inside = os.path.join(sysroot, path.lstrip("/"))
    return inside if os.path.isfile(inside) else path


def recorded_program(heap_file: str, sysroot: str | None = None) -> tuple[str | None, str | None]:
    """The program that ran, named by the file's `# exe:` line or else, as pprof and
    jeprof take it, by the first object of its memory map (jemalloc's and gperftools'
    files), found under `sysroot` where given; and its build-id, checked against the one
    recorded: UserError, one sentence, when the file names none, it is gone or it is
    another build (ProgramNotHere for the first two). None for a profile that names
    every frame itself (pprof's)."""
    if heap_file.endswith(".memlog"):
        raise UserError(
            f"{heap_file} is an event log, which does not name its program: give"
            " it with -p BIN, or -f the capture's .heap file."
        )
    profile = read_heap_header(heap_file)
    if names_every_frame(profile):
        return None, None
    exe = profile.exe or next(
        (m.path for m in read_heap(heap_file).mappings if m.path.startswith("/")), ""
    )
    foreign = not profile.version  # another tool's legacy profile
    if not exe:
        raise ProgramNotHere(
            f"{heap_file} does not name the program that ran (no '# exe:' line and no"
            " memory map): give it with -p BIN.",
            foreign,
        )
    recorded = profile.build_ids.get(exe)
    exe = in_sysroot(exe, sysroot)
    check_owner_reads_program(profile, exe)
    if not os.path.isfile(exe):
        raise ProgramNotHere(
            f"{exe}, the program that ran, is no longer there: give a copy of it with -p BIN"
            " (or its machine's root file system with --sysroot DIR).",
            foreign,
        )
    found = ElfImage(exe).build_id
    if recorded is not None and found != recorded:
        raise UserError(
            f"{exe} is not the build that ran (build-id {found or 'none'}, the"
            f" profile's {recorded}): it was rebuilt; give the binary that ran"
            " with -p BIN."
        )
    return exe, recorded


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
    exe = _opened(os.fspath(binary)) if binary is not None else None
    warnings: list[str] = []
    exe_paths: set[str] = set()
    if exe is not None:
        if not profile.mappings:
            profile.mappings = _program_mappings(exe)
        exe_paths = _exe_paths(profile, exe.basename)
        _check_exe_build_id(profile, exe, exe_paths, allow_mismatch, warnings)

    resolver = _Resolver(profile, exe, exe_paths, lines, warnings, sysroot)
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
            is_allocator_function(_without_rust_hashes(name), file)
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
    profile: HeapProfile, resolver: _Resolver, python_view: bool, merged: bool
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
    resolver: _Resolver,
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


def _named(addresses: np.ndarray, resolver: _Resolver) -> Named:
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
    resolver: _Resolver,
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


def _program_mappings(exe: ElfImage) -> list[MemoryMapping]:
    """The mappings of a profile that records none (Go's `heap/N`): the program's
    segments at their link-time addresses, as pprof takes them; a position-independent
    program's addresses then fall outside them and stay addresses."""
    return [
        MemoryMapping(seg.vaddr, seg.vaddr + seg.filesz, "r-xp", seg.offset, exe.path)
        for seg in exe.segments
    ]


def _exe_paths(profile: HeapProfile, basename: str) -> set[str]:
    """Mapping paths that stand for the program given with -p."""
    paths = {m.path for m in profile.mappings}
    if profile.exe and profile.exe in paths:
        return {profile.exe}
    same_name = {p for p in paths if os.path.basename(p) == basename}
    if same_name:
        return same_name
    first = next((m.path for m in profile.mappings if m.path), None)
    return {first} if first else set()


def _check_exe_build_id(
    profile: HeapProfile,
    exe: ElfImage,
    exe_paths: set[str],
    allow_mismatch: bool,
    warnings: list[str],
) -> None:
    if exe_paths and not profile.build_ids:  # jemalloc's, gperftools' and Go's files
        warnings.append(
            f"the profile records no build-id: that {exe.path} is the build that ran"
            " could not be checked."
        )
    for path in sorted(exe_paths):
        recorded = profile.build_ids.get(path)
        if recorded is None or recorded == exe.build_id:
            continue
        what = (
            f"{exe.path} has build-id {exe.build_id or 'none'} but the profile was recorded"
            f" from {path} with build-id {recorded}"
        )
        if not allow_mismatch:
            raise BuildIdMismatch(
                f"{what}; pass the binary that ran, or --allow-mismatch"
                " to symbolize with this one anyway."
            )
        warnings.append(f"{what}; symbols may be wrong.")


class _Resolver:
    """Turns unique addresses into function ids (into `functions`) and file:line."""

    def __init__(
        self,
        profile: HeapProfile,
        exe: ElfImage | None,
        exe_paths: set[str],
        lines: bool,
        warnings: list[str],
        sysroot: str | None = None,
    ) -> None:
        self.profile = profile
        self.sysroot = sysroot
        self.exe = exe
        self.exe_paths = exe_paths
        self.lines = lines
        self.warnings = warnings
        self.table = FunctionTable()
        # (path, label) of each stripped object with addresses it cannot name: said where
        # stacks of some weight show them (_stripped_warnings), not where a view folds them
        self.stripped: list[tuple[str, str]] = []
        # whose profile this is, when not the reader's: only what they may read is read
        self.on_behalf_of = read_for(profile)

    def _ids_of(
        self,
        names: list[str],
        system_names: list[str] | None = None,
        python_files: list[str | None] | None = None,
    ) -> np.ndarray:
        return np.array(self.table.ids(names, system_names, python_files), np.int64)

    def resolve(
        self, addrs: np.ndarray
    ) -> tuple[np.ndarray, list[tuple[str, int] | None], dict[int, InlinedFrames]]:
        """For each of the sorted unique addrs: function id and (file, line) or None; and
        for those where calls were inlined, each inlined function's id and (file, line),
        innermost first (the function's own (file, line) is then that of its call)."""
        func_of = np.full(len(addrs), -1, np.int64)
        locs: list[tuple[str, int] | None] = [None] * len(addrs)
        inlined: dict[int, InlinedFrames] = {}
        maps = code_mappings(self.profile)
        # addr - start + offset, computed as addr + (offset - start) modulo 2**64
        bases = np.array([(m.offset - m.start) % 2**64 for m in maps], np.uint64)
        paths = sorted({m.path for m in maps})
        path_ids = {path: i for i, path in enumerate(paths)}
        path_of_map = np.array([path_ids[m.path] for m in maps], np.int64)

        which = mapping_index(maps, addrs)
        inside = which >= 0
        path_of = np.full(len(addrs), -1, np.int64)
        path_of[inside] = path_of_map[which[inside]]
        file_offsets = addrs + bases[np.maximum(which, 0)] if len(maps) else addrs
        objects = []  # (path, image or None, the addresses in it)
        for p in np.unique(path_of[inside]).tolist():
            objects.append((paths[p], self._image(paths[p]), np.flatnonzero(path_of == p)))
        progress.stage(f"looking up {len(addrs):,} addresses in {len(objects)} objects")
        found = iter(
            look_up_all(
                [(image, file_offsets[sel]) for _, image, sel in objects if image is not None],
                self.lines,
            )
        )
        for path, image, sel in objects:
            if image is None:
                func_of[sel] = self._unresolved(path, file_offsets[sel])
            else:
                vaddrs = image.offsets_to_vaddrs(file_offsets[sel])
                self._name_object(path, image, sel, vaddrs, next(found), func_of, locs, inlined)
        self._resolve_records(addrs, func_of, locs)
        outside = np.flatnonzero(func_of < 0)
        func_of[outside] = self._ids_of([f"0x{a:x}" for a in addrs[outside].tolist()])
        return func_of, locs, inlined

    def _resolve_records(
        self, addrs: np.ndarray, func_of: np.ndarray, locs: list[tuple[str, int] | None]
    ) -> None:
        """Name the frames the profile names itself: Python frames by their
        `# python_frame:` lines, pprof's by its functions and lines (a frame no record
        names stays an address)."""
        for records, among, python in (
            (self.profile.python_frames, is_python_frame(addrs), True),
            (self.profile.named_frames | _PARSER_RECORDS, is_named_frame(addrs), False),
        ):
            at = np.flatnonzero(among)
            found = [
                (i, records[a])
                for i, a in zip(at.tolist(), addrs[at].tolist(), strict=True)
                if a in records
            ]
            if not found:
                continue
            frames = [frame for _, frame in found]
            files: list[str | None] | None = [f.file for f in frames] if python else None
            func_of[[i for i, _ in found]] = self._ids_of(
                [f.name for f in frames], python_files=files
            )
            for i, frame in found:  # a pprof line may be unknown (0)
                locs[i] = (frame.file, frame.line) if python or frame.line > 0 else None

    def _unresolved(self, path: str, addresses: np.ndarray) -> np.ndarray:
        """The ids of addresses of the object mapped from `path` that nothing names:
        `lib.so+0x1a2b` each."""
        label = os.path.basename(path)
        return self._ids_of([f"{label}+0x{a:x}" for a in addresses.tolist()])

    def _name_object(
        self,
        path: str,
        image: ElfImage,
        sel: np.ndarray,
        vaddrs: np.ndarray,
        lookup: ObjectLookup,
        func_of: np.ndarray,
        locs: list[tuple[str, int] | None],
        inlined: dict[int, InlinedFrames],
    ) -> None:
        """Name the addresses `sel`, those of the object mapped from `path` (at `vaddrs`
        in it), from its `lookup`."""
        label = os.path.basename(path)
        if lookup.error is not None:
            if image is self.exe:
                raise ElfError(lookup.error)
            self.warnings.append(f"{lookup.error} Its frames stay unresolved.")
            func_of[sel] = self._unresolved(path, vaddrs)
            return
        found = lookup.found
        unnamed = len(found) - int(found.sum())
        # A stripped library still names what it exports, as Debian ships them all; the
        # program's own functions are mostly static.
        if unnamed and lookup.stripped and (image is self.exe or not lookup.has_symbols):
            self.stripped.append((image.path, label))
        names = self._ids_of(lookup.names, lookup.mangled)
        func_of[sel[found]] = names[lookup.sym_of]
        func_of[sel[~found]] = self._unresolved(path, lookup.unnamed_at)
        for i, loc in zip(sel.tolist(), lookup.where, strict=True):
            locs[i] = loc
        for i, chain in zip(sel[found].tolist(), lookup.chains, strict=True):
            if chain:
                inlined[i] = self._inlined_frames(chain, locs, i)

    def _inlined_frames(
        self,
        chain: list[tuple[str, tuple[str, int] | None]],
        locs: list[tuple[str, int] | None],
        i: int,
    ) -> InlinedFrames:
        """Frames of the calls inlined at address i, innermost first: the innermost has the
        address's line, each caller the line of its call; so has, at last, the function
        the code is in (locs[i] is changed to it)."""
        names = [name for name, _ in chain]
        fids = self._ids_of([demangle(n) for n in names], names)
        places = [locs[i]] + [site for _, site in chain]
        if self.lines:
            locs[i] = places[-1]
        else:
            places = [None] * len(places)
        return list(zip(fids.tolist(), places[:-1], strict=True))

    def _image(self, path: str) -> ElfImage | None:
        """The ELF file behind a mapping, or None (with a warning) if it cannot be read."""
        if path in self.exe_paths:
            return self.exe
        if not path.startswith("/"):
            return None  # [vdso], anonymous JIT code and the like
        recorded = self.profile.build_ids.get(path)
        path = in_sysroot(path, self.sysroot)
        progress.stage(f"reading the symbols of {os.path.basename(path)}")
        try:
            image = _opened(path, self.on_behalf_of)
        except NotReadableFor as e:
            self.warnings.append(
                f"{path} is not readable by the owner of {self.profile.path} (uid"
                f" {e.uid}): its frames stay unresolved."
            )
            return None
        except ElfError as e:
            self.warnings.append(f"{e} Its frames stay unresolved.")
            return None
        if recorded is not None and recorded != image.build_id:
            self.warnings.append(
                f"{path} on this machine has build-id {image.build_id or 'none'}, the profile"
                f" recorded {recorded}; its frames may be named wrongly."
            )
        return image


# The ELF images symbolize opened, kept for its next call within kept_images(): None
# outside it. By (path, the user it is read for), each with the file's identity then.
_kept: dict[tuple[str, int | None], tuple[tuple[int, ...], ElfImage]] | None = None


@contextlib.contextmanager
def kept_images() -> Iterator[None]:
    """Within the block, each object is opened and its symbols read once for every
    symbolize: for work that names one capture's stacks a batch at a time. The block's
    end lets them go (a long-lived process keeps no symbol tables between its tasks)."""
    global _kept
    outer = _kept
    if outer is None:
        _kept = {}
    try:
        yield
    finally:
        if outer is None:
            _kept = None


def _opened(path: str, for_uid: int | None = None) -> ElfImage:
    """ElfImage(path, for_uid), the one kept_images keeps where the file is still the
    one it opened."""
    if _kept is None:
        return ElfImage(path, for_uid=for_uid)
    try:
        st = os.stat(path)
        identity: tuple[int, ...] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        identity = ()
    kept = _kept.get((path, for_uid))
    if kept is not None and identity and kept[0] == identity:
        return kept[1]
    image = ElfImage(path, for_uid=for_uid)
    if identity:
        _kept[path, for_uid] = identity, image
    return image


def innermost_python(stack: list[int], python: list[bool]) -> int | None:
    """Where the innermost Python frame of `stack` (locations, leaf first) is, by
    python_locations; None where it has none."""
    return next((k for k, location in enumerate(stack) if python[location]), None)
