"""Stacks of a calling-context tree, the `.heap` file's and the event log's (version 2)
form of them (docs/file-formats.md, "The `.heap` file"): each stack is a native leaf node
and a Python one, read up to the root and merged as the sampler merged them before
(ARCHITECTURE.md, "Python programs"). All of it with numpy, never a step per frame: a
profile can hold 400,000 stacks of 100 frames over a million nodes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mem_profiler.core.profile import FRAME_BASE, HeapProfile

# The node that ends a group of Python frames (the frames one evaluation call ran).
GROUP_END = FRAME_BASE + 0xFFFFFFFF
# Stacks are expanded this many frames at a time, which bounds the temporaries.
_CHUNK_FRAMES = 1 << 22


def eval_range(profile: HeapProfile | None) -> tuple[int, int | None] | None:
    """The start and end of _PyEval_EvalFrameDefault's code, from the `# python:` line
    (`<version> 0x<start> [0x<end>]`; files before the tree format name no end: None);
    None for a profile of no Python program."""
    fields = profile.meta.get("python", "").split() if profile is not None else []
    try:
        addresses = [int(f, 16) for f in fields[1:3] if f.startswith("0x")]
    except ValueError:
        return None
    if len(addresses) != len(fields[1:3]) or not addresses:
        return None
    return addresses[0], addresses[1] if len(addresses) > 1 else None


def in_evaluation(addresses: np.ndarray, evaluation: tuple[int, int | None] | None) -> np.ndarray:
    """Per address, whether it is a return address inside the evaluation loop
    (`evaluation`, its start and end: in (start, end]); none where the end is unknown."""
    if evaluation is None or evaluation[1] is None:
        return np.zeros(len(addresses), bool)
    start, end = np.uint64(evaluation[0]), np.uint64(evaluation[1])
    return (addresses > start) & (addresses <= end)


class Levels:
    """Indices grouped by their depth: `at[d]`, those of depth d (a level of a tree)."""

    def __init__(self, depth: np.ndarray) -> None:
        # numpy sorts 16-bit integers by radix: the depths of any tree a file holds
        small = len(depth) == 0 or int(depth.max()) < 2**15
        order = np.argsort(depth.astype(np.int16) if small else depth, kind="stable")
        levels = np.bincount(depth, minlength=int(depth.max(initial=0)) + 1)
        bounds = np.r_[0, np.cumsum(levels)]  # where each depth's run starts
        self.at = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def callers(self, up: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Per node of the tree (whose parents are `up`), whether it is one of `nodes` or
        an ancestor of one (bool); the root is not."""
        marked = np.zeros(len(up), bool)
        marked[nodes] = True
        for at in reversed(self.at[1:]):
            marked[up[at[marked[at]]]] = True
        marked[0] = False
        return marked


class Tree:
    """Nodes 1..n under the root 0: `parent` (each less than its node) and `address`
    (the frame of each node), both indexed by node, the root's entries unused. Nodes not
    `present` count as absent: a chain ends below them (their parent must be 0)."""

    def __init__(
        self, parent: np.ndarray, address: np.ndarray, present: np.ndarray | None = None
    ) -> None:
        # int32 indices: a tree of 2^31 nodes is a file beyond what the reader takes.
        self.parent = np.asarray(parent, np.int32)
        self.address = np.asarray(address, np.uint64)
        weight = np.arange(len(self.parent)) > 0
        if present is not None:
            weight &= present
        ends = weight & (self.address == np.uint64(GROUP_END))
        # frames from each node up to the root, and group ends among them
        self.depth, self.ends = self.path_counts([weight, ends], len(self.parent))

    def jumps(self) -> list[np.ndarray]:
        """jumps[k]: each node's ancestor 2^k levels up (0 beyond the root), up to the
        first that is all 0s. Made for each use rather than kept: a tree of 10^6 nodes
        90 deep has 8 of them, 40 MB."""
        jumps = [self.parent]
        while jumps[-1].any():
            last = jumps[-1]
            jumps.append(last[last])
        return jumps

    def path_sums(self, weights: np.ndarray, jumps: list[np.ndarray] | None = None) -> np.ndarray:
        """For every node the sum of `weights` over it and its ancestors (pointer doubling:
        a step per power of two of the depth; `jumps`, self.jumps() if already made)."""
        sums = np.asarray(weights, np.int64).copy()
        sums[0] = 0
        above = np.empty_like(sums)
        for jump in (jumps or self.jumps())[:-1]:
            sums += np.take(sums, jump, out=above)
        return sums

    def path_counts(
        self, masks: list[np.ndarray], most: int, jumps: list[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """path_sums of each of the boolean `masks`, where no node has more than `most`
        (the tree's depth, or its size) above it: as many at a time as fit side by side
        in an int64, since each pass is a gather of the whole tree per power of two."""
        width = max(int(most).bit_length(), 1)
        field, per = (1 << width) - 1, max(63 // width, 1)
        counts = []
        for first in range(0, len(masks), per):
            group = masks[first : first + per]
            packed = np.zeros(len(self.parent), np.int64)
            for i, mask in enumerate(group):
                packed |= np.asarray(mask, np.int64) << (width * i)
            sums = self.path_sums(packed, jumps)
            counts += [sums >> (width * i) & field for i in range(len(group))]
        return counts

    def python_frames(self, leaves: np.ndarray) -> np.ndarray:
        """How many Python frames the chain of each of the Python `leaves` holds: its
        nodes but the group ends."""
        return self.depth[leaves] - self.ends[leaves]

    def chains(
        self, leaves: np.ndarray, lengths: np.ndarray, jumps: list[np.ndarray]
    ) -> np.ndarray:
        """The nodes of each leaf's chain up to the root (the first `lengths` of them, no
        more than its depth), leaf first, one chain after another.

        A matrix of a column per chain, as long as the longest: its first row the leaves,
        then each next power of two of rows from the ones before (the 0s beyond the root
        stay 0), and the matrix read by columns. stack_runs keeps it small."""
        width = int(lengths.max()) if len(lengths) else 0
        matrix = np.empty((width, len(leaves)), np.int32)
        matrix[:1] = leaves
        step = 1
        for jump in jumps:
            if step >= width:
                break
            rows = min(step, width - step)
            np.take(jump, matrix[:rows], out=matrix[step : step + rows])
            step *= 2
        return matrix.T[np.arange(width) < lengths[:, None]]

    def stacks(
        self,
        native: np.ndarray,
        python: np.ndarray | None = None,
        evaluation: tuple[int, int | None] | None = None,
        values: np.ndarray | None = None,
        fold: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(addresses, offsets) of the stacks whose leaf nodes are `native` and `python`
        (0: none), leaf first: the native chain with the Python chain's groups merged in,
        group g just leafward of the g-th native frame inside the evaluation loop
        (`evaluation`: its start and end; a return address in (start, end]), the groups
        beyond the last such frame (all of them, where the loop is not known) at the root
        end. `values`: what stands for each node in the stacks instead of its address.
        `fold`: a stack with Python frames goes without those evaluation-loop frames and
        without the native frames rootward of its outermost Python frame (as
        python_frames.fold_native_frames folds them)."""
        native = np.asarray(native, np.int64)
        python = np.zeros_like(native) if python is None else np.asarray(python, np.int64)
        native_lengths = self.depth[native]
        python_lengths = self.python_frames(python)
        offsets = np.zeros(len(native) + 1, np.int64)
        np.cumsum(native_lengths + python_lengths, out=offsets[1:])
        values = self.address if values is None else values
        addrs = np.empty(offsets[-1], values.dtype)
        jumps = self.jumps()
        keep = np.ones(len(addrs), bool) if fold else None
        for a, b in stack_runs(np.maximum(native_lengths, self.depth[python])):
            nodes = self.chains(native[a:b], native_lengths[a:b], jumps)
            out = addrs[offsets[a] : offsets[b]]
            if not python_lengths[a:b].any():
                np.take(values, nodes, out=out)
                continue
            kept = keep[offsets[a] : offsets[b]] if keep is not None else None
            self._merge(
                out, values, nodes, native_lengths[a:b], python[a:b], evaluation, jumps, kept
            )
        if keep is None or keep.all():
            return addrs, offsets
        dropped = np.flatnonzero(~keep)
        lengths = np.diff(offsets)
        lengths -= np.bincount(
            np.searchsorted(offsets, dropped, side="right") - 1, minlength=len(lengths)
        )
        np.cumsum(lengths, out=offsets[1:])
        return addrs[keep], offsets

    def _merge(
        self,
        out: np.ndarray,
        values: np.ndarray,
        native_nodes: np.ndarray,
        native_lengths: np.ndarray,
        python: np.ndarray,
        evaluation: tuple[int, int | None] | None,
        jumps: list[np.ndarray],
        keep: np.ndarray | None = None,
    ) -> None:
        """Write into `out` the `values` of the stacks of native frames `native_nodes`
        (one run of `native_lengths` per stack) merged with the Python chains of the
        leaves `python`; with `keep` (bool, as `out`), clear it where a stack with Python
        frames folds a native frame (Tree.stacks with fold).

        A Python frame goes to its group's anchor (the native frame its group goes before,
        or the stack's end) plus its rank among the stack's Python frames: those before it
        in the chain are anchored no further out, those after it no nearer. The native
        frames fill the places left, in order."""
        chain_lengths = self.depth[python]
        chain = self.chains(python, chain_lengths, jumps)
        frames = self.address[chain] != np.uint64(GROUP_END)
        stack = np.repeat(np.arange(len(python)), chain_lengths)[frames]
        chain = chain[frames]
        group = self.ends[python][stack] - self.ends[chain]
        counts = np.bincount(stack, minlength=len(python))
        rank = np.arange(len(chain)) - (np.cumsum(counts) - counts)[stack]

        native_starts = np.cumsum(native_lengths) - native_lengths
        native_addrs = self.address[native_nodes]
        in_eval = in_evaluation(native_addrs, evaluation)
        evals = np.flatnonzero(in_eval)
        eval_stack = np.searchsorted(native_starts, evals, side="right") - 1
        eval_counts = np.bincount(eval_stack, minlength=len(python))
        eval_firsts = np.cumsum(eval_counts) - eval_counts
        anchor = native_lengths[stack]
        reached = group < eval_counts[stack]
        at = stack[reached]
        anchor[reached] = evals[eval_firsts[at] + group[reached]] - native_starts[at]

        lengths = native_lengths + counts
        place = (np.cumsum(lengths) - lengths)[stack] + anchor + rank
        taken = np.zeros(len(out), bool)
        taken[place] = True
        out[place] = values[chain]
        native_places = np.flatnonzero(~taken)
        out[native_places] = values[native_nodes]
        if keep is None:
            return
        # a stack's Python frames are placed in chain order: its outermost is its last
        outermost = np.full(len(python), -1, np.int64)
        has = counts > 0
        outermost[has] = place[(np.cumsum(counts) - 1)[has]]
        native_stack = np.repeat(np.arange(len(python)), native_lengths)
        last = outermost[native_stack]
        keep[native_places[(last >= 0) & (in_eval | (native_places > last))]] = False


class StackTree:
    """A profile's stacks as leaves of a Tree: stack i ends at the native node `native[i]`
    and the Python node `python[i]` (0: none); `evaluation` as Tree.stacks takes it."""

    def __init__(
        self,
        tree: Tree,
        native: np.ndarray,
        python: np.ndarray,
        evaluation: tuple[int, int | None] | None,
    ) -> None:
        self.tree = tree
        self.native = np.asarray(native, np.int64)
        self.python = np.asarray(python, np.int64)
        self.evaluation = evaluation

    def expand(
        self, values: np.ndarray | None = None, fold: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The stacks' frames, leaf first, and their offsets (Tree.stacks, `fold` as it
        takes it); a stack of no frame gets the root's value (address 0: one unknown
        frame, as heap_v2 files have it)."""
        values = self.tree.address if values is None else values
        frames, offsets = self.tree.stacks(self.native, self.python, self.evaluation, values, fold)
        empty = np.flatnonzero(offsets[1:] == offsets[:-1])
        if len(empty):
            frames = np.insert(frames, offsets[empty], values[0])
            offsets[1:] += np.cumsum(offsets[1:] == offsets[:-1])
        return frames, offsets

    def lengths(self) -> np.ndarray:
        """How many frames expand() gives each stack, but for the root's frame that
        stands for an empty one."""
        return self.tree.depth[self.native] + self.tree.python_frames(self.python)

    def python_view(self) -> StackTree:
        """These stacks, those with Python frames ending at the root on the native side:
        expanded, their Python frames alone (python_frames.fold_native_frames' view)."""
        has_python = self.tree.python_frames(self.python) > 0
        return StackTree(
            self.tree, np.where(has_python, 0, self.native), self.python, self.evaluation
        )

    def runs(self, frames: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """expand() a run of stacks at a time, each run of about `frames` frames (one
        stack at least): its first stack's index, its frames and its offsets (from 0)."""
        for a, b in stack_runs(self.lengths(), frames):
            run = StackTree(self.tree, self.native[a:b], self.python[a:b], self.evaluation)
            yield a, *run.expand()


def stack_runs(widths: np.ndarray, frames: int = _CHUNK_FRAMES) -> Iterator[tuple[int, int]]:
    """Runs [a, b) of the stacks (of `widths` frames each) that, each as long as the
    longest of the run, make about `frames` frames (one stack at least): what bounds the
    temporaries of work done a run at a time."""
    widths = np.maximum(widths, 1)
    a = 0
    while a < len(widths):
        window = widths[a : a + frames]
        cells = np.maximum.accumulate(window) * np.arange(1, len(window) + 1)
        b = a + max(int(np.searchsorted(cells, frames, side="right")), 1)
        yield a, b
        a = b


def hal_labels(flags: np.ndarray) -> list[str]:
    """The `# labels:` text of each of the HAL's allocation flags: bits 0-9 the device,
    10-13 the memory type, 56-63 the module (ARCHITECTURE.md, "Device and HAL
    allocators")."""
    distinct, index = np.unique(np.asarray(flags, np.uint64), return_inverse=True)
    texts = []
    for flag in distinct.tolist():
        memtype = flag >> 10 & 0xF
        shown = ("SVM", "DEV", "HOST", "DVPP")[memtype] if memtype < 4 else str(memtype)
        texts.append(f"device={flag & 0x3FF} memtype={shown} module={flag >> 56}")
    return [texts[i] for i in index.tolist()]
