"""Flat and cumulative values per node of a symbolized profile."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mem_profiler.parser.nputil import sorted_unique
from mem_profiler.parser.sampling import sample_values
from mem_profiler.parser.symbolize import SymbolizedProfile


@dataclass
class FlatCum:
    """Rows sorted by flat desc, cum desc, name; values are unsampled estimates."""

    index: str  # the sample index: inuse_space, inuse_objects, alloc_space, alloc_objects
    total: float
    names: list[str]
    flat: np.ndarray  # float64
    cum: np.ndarray  # float64

    @property
    def unit(self) -> str:
        return "objects" if self.index.endswith("_objects") else "bytes"


def aggregate(sym: SymbolizedProfile, index: str = "inuse_space", *, lines: bool = False,
              full_names: bool = False) -> FlatCum:
    """flat = value of samples whose leaf is the node; cum = value of samples whose
    stack holds the node (once per sample under recursion); nodes worth 0 are left out.

    Nodes are functions, or `function file:line` with lines (see
    SymbolizedProfile.node_names)."""
    values = sample_values(sym.profile, index)
    names, node_of = sym.node_names(lines, full_names)
    frames = node_of[sym.frames] if len(sym.frames) else sym.frames
    n = len(names)
    lengths = np.diff(sym.offsets)
    nonempty = lengths > 0
    leaves = frames[sym.offsets[:-1][nonempty]]
    flat = np.bincount(leaves, weights=values[nonempty], minlength=n)
    stack_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    pairs = sorted_unique(stack_of * n + frames)  # each (stack, node) once
    cum = np.bincount(pairs % n, weights=values[pairs // n], minlength=n) if n else flat

    by_name = np.empty(n, np.int64)
    by_name[sorted(range(n), key=names.__getitem__)] = np.arange(n)
    order = np.lexsort((by_name, -cum, -flat))
    order = order[(cum[order] != 0) | (flat[order] != 0)]
    return FlatCum(index, float(values.sum()), [names[i] for i in order.tolist()],
                   flat[order], cum[order])
