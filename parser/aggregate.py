"""Flat and cumulative values per node of a symbolized profile."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mem_profiler.parser.context_tree import stack_runs
from mem_profiler.parser.nputil import name_ranks, sorted_unique
from mem_profiler.parser.sampling import index_unit
from mem_profiler.parser.symbolize import SymbolizedProfile

_RUN_FRAMES = 1 << 19  # frames whose (stack, node) pairs are counted at once


@dataclass
class FlatCum:
    """Rows sorted by |flat| desc, |cum| desc, name; values are unsampled estimates
    (differences, possibly negative, in a diff)."""

    index: str  # the sample index: inuse_space, inuse_objects, alloc_space, alloc_objects
    total: float
    names: list[str]
    flat: np.ndarray  # float64
    cum: np.ndarray  # float64

    @property
    def unit(self) -> str:
        return index_unit(self.index)


def node_frames(
    sym: SymbolizedProfile, lines: bool = False, full_names: bool = False
) -> tuple[list[str], np.ndarray]:
    """Node names (see SymbolizedProfile.node_names) and the node of each frame of the
    stacks, int64, concatenated as sym.frames."""
    names, node_of = sym.node_names(lines, full_names)
    return names, node_of[sym.frames] if len(sym.frames) else sym.frames


def aggregate(
    sym: SymbolizedProfile,
    index: str = "inuse_space",
    *,
    lines: bool = False,
    full_names: bool = False,
) -> FlatCum:
    """flat = value of samples whose leaf is the node; cum = value of samples whose
    stack holds the node (once per sample under recursion); nodes worth 0 are left out.

    Nodes are functions, or `function file:line` with lines (see
    SymbolizedProfile.node_names)."""
    values = sym.value(index)
    names, node_of = sym.node_names(lines, full_names)
    n = len(names)
    lengths = np.diff(sym.offsets)
    nonempty = lengths > 0
    leaves = node_of[sym.frames[sym.offsets[:-1][nonempty]]]
    flat = np.bincount(leaves, weights=values[nonempty], minlength=n)
    cum = np.zeros(n)
    for a, b in stack_runs(lengths, _RUN_FRAMES):
        # (stack, node) pairs of the run, each once: a node counts once per stack
        pairs = np.repeat(np.arange(b - a, dtype=np.int64) * n, lengths[a:b])
        pairs += node_of[sym.frames[sym.offsets[a] : sym.offsets[b]]]
        stack, node = np.divmod(sorted_unique(pairs, overwrite=True), max(n, 1))
        cum += np.bincount(node, weights=values[a:b][stack], minlength=n)

    order = np.lexsort((name_ranks(names), -np.abs(cum), -np.abs(flat)))
    order = order[(cum[order] != 0) | (flat[order] != 0)]
    return FlatCum(
        index, float(values.sum()), [names[i] for i in order.tolist()], flat[order], cum[order]
    )
