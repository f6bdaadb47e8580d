"""Flat and cumulative values per node of a symbolized profile."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mem_profiler.parser.common.arrays import name_ranks
from mem_profiler.parser.common.sampling import index_unit
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile
from mem_profiler.parser.symbols.tree_sums import stacks_flat_cum


@dataclass
class FlatCum:
    """Rows sorted by |flat| desc, |cum| desc, name; values are unsampled estimates
    (differences, possibly negative, in a diff)."""

    index: str  # the sample index: inuse_space, inuse_objects, alloc_space, alloc_objects
    total: float
    share_of: float  # what the shares (%) are of: share_base
    names: list[str]
    flat: np.ndarray  # float64
    cum: np.ndarray  # float64

    @property
    def unit(self) -> str:
        return index_unit(self.index)


def share_base(values: np.ndarray) -> float:
    """What a report's shares (%) are of: the stacks' values added as sizes, as pprof
    takes them for -base.  That is the total, but in a diff, where growth and shrinkage
    can cancel to a net change near 0, a share of the net would be any size."""
    return float(np.abs(values).sum())


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
    if sym.tree is not None:
        flat, cum = sym.tree.flat_cum(node_of, values, len(names))
    else:
        flat, cum = stacks_flat_cum(sym.frames, sym.offsets, node_of, values, len(names))

    order = np.lexsort((name_ranks(names), -np.abs(cum), -np.abs(flat)))
    order = order[(cum[order] != 0) | (flat[order] != 0)]
    return FlatCum(
        index,
        float(values.sum()),
        share_base(values),
        [names[i] for i in order.tolist()],
        flat[order],
        cum[order],
    )
