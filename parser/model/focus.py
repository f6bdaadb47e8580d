"""Keep the stacks through some nodes, drop those through others (pprof's -focus and
-ignore); a raw profile narrowed to some of its stacks."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.model.aggregate import node_frames
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile


def select_stacks(
    sym: SymbolizedProfile,
    focus: re.Pattern[str] | None = None,
    ignore: re.Pattern[str] | None = None,
    *,
    lines: bool = False,
    full_names: bool = False,
) -> SymbolizedProfile:
    """The stacks with a node matching `focus` (if given) and none matching `ignore` (if
    given); patterns are searched in node names (`function file:line` with lines, C++
    names with their arguments and templates with full_names)."""
    keep = stacks_kept(sym, focus, ignore, lines=lines, full_names=full_names)
    return sym if keep is None else keep_stacks(sym, keep)


def stacks_kept(
    sym: SymbolizedProfile,
    focus: re.Pattern[str] | None = None,
    ignore: re.Pattern[str] | None = None,
    *,
    lines: bool = False,
    full_names: bool = False,
) -> np.ndarray | None:
    """Per stack of `sym`, whether select_stacks keeps it (bool); None when neither
    pattern is given."""
    if focus is None and ignore is None:
        return None
    names, nodes = node_frames(sym, lines, full_names)
    lengths = np.diff(sym.offsets)
    stack_of = np.repeat(np.arange(len(lengths)), lengths)

    def through(pattern: re.Pattern[str]) -> np.ndarray:
        """Per stack: does a frame match?"""
        matching = np.array([pattern.search(name) is not None for name in names], bool)
        return np.bincount(stack_of[matching[nodes]], minlength=len(lengths)) > 0

    keep = np.ones(len(lengths), bool)
    if focus is not None:
        keep &= through(focus)
    if ignore is not None:
        keep &= ~through(ignore)
    return keep


def keep_stacks(sym: SymbolizedProfile, keep: np.ndarray) -> SymbolizedProfile:
    """sym with only the stacks `keep` says (bool per stack)."""
    lengths = np.diff(sym.offsets)
    offsets = np.zeros(int(keep.sum()) + 1, np.int64)
    np.cumsum(lengths[keep], out=offsets[1:])
    assert sym.values is not None  # SymbolizedProfile.__post_init__ fills it in
    return dataclasses.replace(
        sym,
        frames=sym.frames[np.repeat(keep, lengths)],
        offsets=offsets,
        values=sym.values[keep],
        tree=None,  # the tree holds every stack
    )


def some_stacks(prof: HeapProfile, which: np.ndarray) -> HeapProfile:
    """prof with only the stacks `which`, in that order (their addresses, counts,
    estimates and labels); its failed allocations and foreign ranges, which are none of
    its stacks, kept."""
    lengths = np.diff(prof.offsets)[which]
    offsets = np.zeros(len(which) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # each stack's addresses: its start in prof, then consecutive
    take = np.arange(offsets[-1]) + np.repeat(prof.offsets[which] - offsets[:-1], lengths)
    return dataclasses.replace(
        prof,
        addrs=prof.addrs[take],
        offsets=offsets,
        cur_objs=prof.cur_objs[which],
        cur_bytes=prof.cur_bytes[which],
        acc_objs=prof.acc_objs[which],
        acc_bytes=prof.acc_bytes[which],
        labels={
            new: prof.labels[old] for new, old in enumerate(which.tolist()) if old in prof.labels
        },
        estimates=None if prof.estimates is None else prof.estimates[which],
        stack_ids=None if prof.stack_ids is None else prof.stack_ids[which],
        peak=None if prof.peak is None else prof.peak.taken(which),
        unreachable=None if prof.unreachable is None else prof.unreachable.taken(which),
        frees=None if prof.frees is None else prof.frees.taken(which),
        live_blocks=None,
    )
