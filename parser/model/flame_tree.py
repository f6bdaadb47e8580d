"""Stacks merged from the root into a tree (the flame graph's model), and the collapsed
`frame;frame;frame value` lines that flamegraph.pl and speedscope read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mem_profiler.core.escape import visible
from mem_profiler.parser.model.aggregate import node_frames
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile


@dataclass
class FlameTree:
    """Tree node i is frame names[name[i]] called from tree node parent[i] (-1: a root
    frame); parents come before their children. In a diff, values are NEW - OLD and the
    width of a frame is its weight, the sum of |value| of the stacks through it."""

    index: str
    names: list[str]
    name: np.ndarray  # int64 per tree node
    parent: np.ndarray  # int64 per tree node
    value: np.ndarray  # float64: of the stacks through the node
    weight: np.ndarray  # float64: sum of |value| of those stacks

    @property
    def total(self) -> float:
        return float(self.value[self.parent < 0].sum())


def flame_tree(
    sym: SymbolizedProfile,
    index: str = "inuse_space",
    *,
    lines: bool = False,
    full_names: bool = False,
) -> FlameTree:
    """Merge the stacks from the root, one depth at a time (stacks worth 0 are left out)."""
    names, frames = node_frames(sym, lines, full_names)
    n = len(names)
    lengths = np.diff(sym.offsets)
    values = sym.value(index)
    stacks = np.flatnonzero((lengths > 0) & (values != 0))
    ends = sym.offsets[1:][stacks] - 1  # the root frame of each stack
    depth_left = lengths[stacks]
    current = np.full(len(stacks), -1, np.int64)  # tree node of each stack, -1: above roots
    parts: list[tuple[np.ndarray, ...]] = []
    count = 0
    while len(stacks):
        keys, tree_of = np.unique((current + 1) * n + frames[ends], return_inverse=True)
        v = values[stacks]
        parts.append(
            (
                keys % n,
                keys // n - 1,
                np.bincount(tree_of, weights=v, minlength=len(keys)),
                np.bincount(tree_of, weights=np.abs(v), minlength=len(keys)),
            )
        )
        current = count + tree_of
        count += len(keys)
        deeper = depth_left > 1
        stacks, ends, depth_left, current = (
            stacks[deeper],
            ends[deeper] - 1,
            depth_left[deeper] - 1,
            current[deeper],
        )
    if not parts:
        ints, floats = np.zeros(0, np.int64), np.zeros(0)
        return FlameTree(index, names, ints, ints, floats, floats)
    name, parent, value, weight = (np.concatenate(c) for c in zip(*parts, strict=True))
    return FlameTree(index, names, name, parent, value, weight)


def collapsed_lines(
    sym: SymbolizedProfile,
    index: str = "inuse_space",
    *,
    lines: bool = False,
    full_names: bool = False,
) -> Iterator[str]:
    """One `root;...;leaf value` line per distinct stack of nodes, values rounded to
    integers (negative ones in a diff); lines that round to 0 are left out. (A `;` in a
    name would split it: it is written `:`; a line break as `\\n`, see visible.) Stacks
    are merged by their labels' numbers, and each line made as it is given: the text of
    a program's every native stack can be hundreds of megabytes."""
    names, frames = node_frames(sym, lines, full_names)
    numbers: dict[str, int] = {}
    number_of = [numbers.setdefault(visible(n).replace(";", ":"), len(numbers)) for n in names]
    labels = list(numbers)
    keys = np.array(number_of, np.int32)[frames].tobytes() if len(frames) else b""
    values = sym.value(index)
    bounds = (sym.offsets * 4).tolist()
    totals: dict[bytes, float] = {}
    for i in np.flatnonzero((np.diff(sym.offsets) > 0) & (values != 0)).tolist():
        key = keys[bounds[i] : bounds[i + 1]]
        totals[key] = totals.get(key, 0.0) + values[i]
    for key, value in totals.items():
        if rounded := round(value):
            stack = np.frombuffer(key, np.int32)[::-1].tolist()
            yield f"{';'.join([labels[n] for n in stack])} {rounded}\n"
