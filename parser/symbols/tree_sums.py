"""The merged stacks of a tree-format profile as the reports of names take them: expanded
into stacks of locations (folded and cut as symbolize makes them), or summed per name
straight from the tree, which -t's table does without expanding a stack.

A stack's frames, as symbolize makes them, are its native chain with its Python groups
merged in (context_tree.Tree.stacks), folded (without the evaluation loop's frames and,
when its outermost Python frame is anchored at an evaluation frame, without the frames
rootward of that one), each frame its run of locations (inlined calls first), and cut
at its allocator's frames (allocator_frames.cut_allocator_frames). A name counts once
per stack, at its rootmost location there. What a location keeps of that is told by its
node alone for three kinds of stack, which makes the sums a pass over the tree:

- without Python frames: every frame is kept;
- with fewer evaluation frames than Python groups (a native walk cut at its depth): the
  outer groups go at the stack's root end, so only the evaluation frames go;
- with as many: the frames rootward of the rootmost evaluation frame go too.

The cut is then a property of a node too: a location goes if an allocator location is
at it or rootward of it among the kept ones. Stacks of none of these kinds (an
allocator frame rootward of an evaluation frame, a stack all allocator, a Python frame
of the profiler's own code) are expanded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mem_profiler.parser.common.arrays import sorted_unique
from mem_profiler.parser.read.context_tree import (
    GROUP_END,
    Levels,
    StackTree,
    in_evaluation,
    stack_runs,
)
from mem_profiler.parser.symbols.allocator_frames import cut_allocator_frames
from mem_profiler.parser.symbols.python_frames import is_python_frame

_RUN_FRAMES = 1 << 19  # frames whose (stack, name) pairs are counted at once


def location_frames(
    first: np.ndarray, locations: int, frames: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The stacks of address frames (`frames`, `offsets`) as stacks of locations, each
    address's frame its run of locations (from first[address]: symbolize._with_inlined)."""
    after = np.r_[first[1:], locations].astype(np.int32)  # where each address's run ends
    first = first.astype(np.int32)
    lengths = (after - first)[frames]
    total = int(lengths.sum(dtype=np.int64))
    ends = np.cumsum(lengths, dtype=np.int32 if total < 2**31 else np.int64)
    del lengths
    # consecutive location ids within a frame's run, a jump to the next run's first:
    # one cumulative sum rather than two repeats of the 10^6 frames
    steps = np.ones(total, np.int32)
    steps[ends[:-1]] = first[frames[1:]] - after[frames[:-1]] + 1
    steps[0] = first[frames[0]]
    return np.cumsum(steps, out=steps), np.r_[0, ends][offsets]


def stacks_flat_cum(
    frames: np.ndarray, offsets: np.ndarray, name_of: np.ndarray, values: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per name (of `n`): the value of the stacks (location `frames`, leaf first, and
    their `offsets`) whose leaf it names, and of those it names a location of, once per
    stack (`name_of`: per location)."""
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    leaves = name_of[frames[offsets[:-1][nonempty]]]
    flat = np.bincount(leaves, weights=values[nonempty], minlength=n)
    cum = np.zeros(n)
    for a, b in stack_runs(lengths, _RUN_FRAMES):
        # (stack, name) pairs of the run, each once
        pairs = np.repeat(np.arange(b - a, dtype=np.int64) * n, lengths[a:b])
        pairs += name_of[frames[offsets[a] : offsets[b]]]
        stack, name = np.divmod(sorted_unique(pairs, overwrite=True), max(n, 1))
        cum += np.bincount(name, weights=values[a:b][stack], minlength=n)
    return flat, cum


@dataclass
class TreeStacks:
    """A merged profile's stacks (`stacks`, as merge_stacks makes them), each of its
    nodes standing for an address (`node_address`: an index among the addresses whose
    locations start at `first`, None when each is one location), the allocator's
    locations (`allocator`, bool per location) and whether the interpreter's frames are
    folded (`fold`)."""

    stacks: StackTree
    node_address: np.ndarray
    first: np.ndarray | None
    allocator: np.ndarray
    fold: bool

    def expand(self, which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The location frames of the stacks (or of those `which` picks), leaf first,
        folded and cut, and their offsets."""
        stacks = self.stacks
        if which is not None:
            stacks = StackTree(
                stacks.tree, stacks.native[which], stacks.python[which], stacks.evaluation
            )
        frames, offsets = stacks.expand(self.node_address, self.fold)
        if self.first is not None and len(frames):
            frames, offsets = location_frames(self.first, len(self.allocator), frames, offsets)
        return cut_allocator_frames(frames, self.allocator[frames], offsets)

    def flat_cum(
        self, name_of: np.ndarray, values: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """stacks_flat_cum of the expanded stacks, summed over the tree instead."""
        return _Sums(self, name_of, values, n).flat_cum()


class _Sums:
    """TreeStacks.flat_cum's work: per node of the tree its flags and its run of
    locations, per stack its kind."""

    def __init__(self, ts: TreeStacks, name_of: np.ndarray, values: np.ndarray, n: int) -> None:
        self.ts, self.name_of, self.values, self.n = ts, name_of, values, n
        tree = ts.stacks.tree
        self.tree = tree
        self.parent = tree.parent.astype(np.int64)
        count = len(self.parent)
        address = tree.address
        self.ends_group = address == np.uint64(GROUP_END)
        python = is_python_frame(address) & ~self.ends_group
        self.python = python
        self.native = ~python & ~self.ends_group
        self.native[0] = False
        self.eval = self.native & in_evaluation(address, ts.stacks.evaluation)
        # each node's run of locations, leaf first; none for the root and group ends
        if ts.first is None:
            self.start = ts.node_address.astype(np.int64)
            self.run = np.ones(count, np.int64)
        else:
            after = np.r_[ts.first[1:], len(ts.allocator)]
            self.start = ts.first[ts.node_address].astype(np.int64)
            self.run = after[ts.node_address] - self.start
        self.run[~(self.native | python)] = 0
        self.levels = Levels(tree.depth).at
        self.jumps = tree.jumps()
        # per node, the evaluation and the Python frames from it up to the root
        self.evals, self.frames_above = self.path_counts([self.eval, python])

    def path_counts(self, masks: list[np.ndarray]) -> list[np.ndarray]:
        return self.tree.path_counts(masks, int(self.tree.depth.max(initial=0)), self.jumps)

    def nearest(self, mask: np.ndarray) -> np.ndarray:
        """Per node, the nearest of it and its ancestors where `mask` holds (0: none)."""
        near = np.where(mask, np.arange(len(mask)), 0)
        for at in self.levels[1:]:
            near[at] = np.where(mask[at], at, near[self.parent[at]])
        return near

    def ancestor_reaching(self, nodes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Per node, its rootmost ancestor (or itself) with as many evaluation frames
        from the root as `counts` says, at least one; 0 where it has fewer."""
        counts = np.asarray(counts, np.int64)
        at = np.where((counts >= 1) & (self.evals[nodes] >= counts), nodes, 0)
        for jump in reversed(self.jumps[:-1]):
            up = jump[at]
            climb = (up > 0) & (self.evals[up] >= counts)
            at = np.where(climb, up, at)
        return at

    def flat_cum(self) -> tuple[np.ndarray, np.ndarray]:
        ts, tree, n = self.ts, self.tree, self.n
        native_leaf, python_leaf = ts.stacks.native, ts.stacks.python
        # the locations of every node, each with its node and its place in the run
        loc_node = np.repeat(np.arange(len(self.run)), self.run)
        loc_at = np.arange(len(loc_node)) - np.repeat(np.cumsum(self.run) - self.run, self.run)
        loc = self.start[loc_node] + loc_at
        loc_alloc = ts.allocator[loc] & self.native[loc_node]
        # the rootmost allocator location of each node's run (-1: none)
        last_alloc = np.full(len(self.run), -1, np.int64)
        np.maximum.at(last_alloc, loc_node[loc_alloc], loc_at[loc_alloc])
        has_alloc = last_alloc >= 0

        # kinds of stack: 0 no Python frames, 1 fewer evaluation frames than groups,
        # 2 as many; -1 expanded
        with_python = tree.depth[python_leaf] > tree.ends[python_leaf]
        (ends_before,) = self.path_counts([self.ends_group & (self.frames_above == 0)])
        groups = 1 + tree.ends[python_leaf] - ends_before[python_leaf]
        evals = self.evals[native_leaf]
        kind = np.where(with_python, np.where(evals < groups, 1, 2), 0)
        kind[with_python & (evals > groups)] = -1
        # a Python frame of the allocator's (the profiler's own code) cuts the stack
        # across its groups: expanded
        python_alloc = np.zeros(len(self.run), bool)
        python_alloc[loc_node[ts.allocator[loc] & self.python[loc_node]]] = True
        (python_allocs,) = self.path_counts([python_alloc])
        kind[python_allocs[python_leaf] > 0] = -1

        kept = [self.native] * 3  # by kind: the frames the fold keeps
        if ts.fold:
            kept[1] = self.native & ~self.eval
            kept[2] = kept[1] & (self.evals[self.parent] > 0)
        innermost = self.nearest(self.python)[python_leaf]
        python_first = self.start[innermost]
        # the evaluation frame the innermost Python frame goes just leafward of (0: it
        # goes at the root end): the first past as many as groups before it, all empty
        anchor = self.ancestor_reaching(
            native_leaf, evals - tree.ends[python_leaf] + tree.ends[innermost]
        )
        flat_loc = np.full(len(kind), -1, np.int64)
        cut = []
        every_allocs = self.path_counts([has_alloc & kept[k] for k in range(3)])
        for k, allocs in enumerate(every_allocs):
            cut.append(allocs[self.parent] > 0)  # an allocator location rootward
            has_kept = kept[k] & ~cut[k] & (last_alloc < self.run - 1)
            leaf = self.nearest(has_kept)[native_leaf]
            mine = kind == k
            found = mine & (leaf > 0)
            if k:
                found &= (anchor == 0) | (tree.depth[leaf] > tree.depth[anchor])
            flat_loc[found] = self.start[leaf[found]] + last_alloc[leaf[found]] + 1
            if k == 0:
                kind[mine & ~found] = -1  # all the allocator's: keeps its outermost frame
                continue
            flat_loc[mine & ~found] = python_first[mine & ~found]
            # an allocator location at or rootward of the anchor cuts Python frames
            kind[mine & (anchor > 0) & (allocs[anchor] > 0)] = -1

        values = self.values
        simple = kind >= 0
        flat = np.zeros(n)  # a bincount of no stack would be of integers
        flat += np.bincount(self.name_of[flat_loc[simple]], weights=values[simple], minlength=n)
        cum = self._cum(loc_node, loc_at, loc, kept, cut, last_alloc, kind, with_python)
        rest = np.flatnonzero(~simple)
        if len(rest):
            frames, offsets = ts.expand(rest)
            more = stacks_flat_cum(frames, offsets, self.name_of, values[rest], n)
            flat += more[0]
            cum += more[1]
        return flat, cum

    def _cum(
        self,
        loc_node: np.ndarray,
        loc_at: np.ndarray,
        loc: np.ndarray,
        kept: list[np.ndarray],
        cut: list[np.ndarray],
        last_alloc: np.ndarray,
        kind: np.ndarray,
        with_python: np.ndarray,
    ) -> np.ndarray:
        """Per name, the value of the simple stacks with a location of it: each counted at
        its rootmost kept location of the name in the stack, whose node has no kept
        ancestor with a location of that name (a query on the tree's Euler tour)."""
        n = self.n
        tin, tout = self._euler()
        # (node, name) pairs, each at its rootmost place in the node's run
        name = self.name_of[loc]
        pair = loc_node * n + name
        order = np.lexsort((-loc_at, pair))
        keep = np.ones(len(order), bool)
        keep[1:] = pair[order][1:] != pair[order][:-1]
        at = order[keep]
        node, name, place = loc_node[at], name[at], loc_at[at]
        # sorted by name, then by place in the tour
        order = np.lexsort((tin[node], name))
        node, name, place = node[order], name[order], place[order]
        span = np.int64(len(tin) + 1)
        key_in = name * span + tin[node]

        def ancestor_with(member: np.ndarray) -> np.ndarray:
            """Whether a node of `member` with the pair's name is a proper ancestor of
            the pair's node: the latest such node before it in the tour ends after it."""
            reach = np.where(member[node], name * span + tout[node], -1)
            before = np.full(len(reach), -1, np.int64)
            np.maximum.accumulate(reach[:-1], out=before[1:])
            return before >= key_in

        cum = np.zeros(n)
        weights = self._subtree_values(tin, tout, kind, with_python)
        for k in range(3):
            counted = kept[k][node] & ~cut[k][node] & (place > last_alloc[node])
            counted &= ~ancestor_with(kept[k])
            cum += np.bincount(name[counted], weights=weights[k][node[counted]], minlength=n)
        python = self.python[node]
        counted = python & ~ancestor_with(self.python)
        cum += np.bincount(name[counted], weights=weights[3][node[counted]], minlength=n)
        return cum

    def _subtree_values(
        self, tin: np.ndarray, tout: np.ndarray, kind: np.ndarray, with_python: np.ndarray
    ) -> list[np.ndarray]:
        """Per node, the value of the simple stacks of each kind whose native leaf is it
        or under it, and (last) of those with Python frames whose Python leaf is."""
        stacks = self.ts.stacks
        out = []
        for k, leaves in enumerate([stacks.native] * 3 + [stacks.python]):
            mine = kind == k if k < 3 else (kind >= 0) & with_python
            at_leaf = np.bincount(tin[leaves[mine]], self.values[mine], minlength=len(tin) + 1)
            before = np.r_[0, np.cumsum(at_leaf)]
            out.append(before[tout + 1] - before[tin])
        return out

    def _euler(self) -> tuple[np.ndarray, np.ndarray]:
        """Each node's place in a depth-first walk of the tree and the last place of its
        subtree: a node's descendants are those whose place is in (tin, tout]."""
        count = len(self.parent)
        size = np.ones(count, np.int64)
        for at in reversed(self.levels[1:]):
            np.add.at(size, self.parent[at], size[at])
        tin = np.zeros(count, np.int64)
        for at in self.levels[1:]:
            by_parent = at[np.argsort(self.parent[at], kind="stable")]
            up = self.parent[by_parent]
            ends = np.cumsum(size[by_parent])
            group = np.r_[True, up[1:] != up[:-1]]
            # the sizes of the siblings before each, under the same parent
            before = ends - size[by_parent]
            before -= before[np.maximum.accumulate(np.where(group, np.arange(len(up)), 0))]
            tin[by_parent] = tin[up] + 1 + before
        return tin, tin + size - 1
