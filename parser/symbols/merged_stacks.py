"""A tree-format profile's stacks merged by what a report shows of them (as pprof merges
a profile's samples of the same locations): nodes of one caller that name the same
functions become one node, and stacks that end at the same nodes one stack, their
counts added. A Python program's 400,000 stacks, most of them apart only by a line or
a return address, are some 60,000 of functions; the reports of names expand only those
(symbolize.symbolize with merge)."""

from __future__ import annotations

import dataclasses

import numpy as np

from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.arrays import index_of, sorted_unique
from mem_profiler.parser.read.context_tree import Levels, StackTree, Tree


@dataclasses.dataclass(frozen=True)
class NodeKeys:
    """What each node of a StackTree stands for, as a caller (`caller_*`) and as the leaf
    of a native chain (`leaf_*`, read at the stacks' native leaves): a key (int64, equal
    where the reports show the same) and a value (what stands for the node in the merged
    stacks). `folded`: the nodes a stack with Python frames goes without (its native
    frames but the evaluation loop's, python_frames.fold_native_frames), all per node."""

    caller_key: np.ndarray
    caller_value: np.ndarray
    leaf_key: np.ndarray
    leaf_value: np.ndarray
    folded: np.ndarray


def merge_stacks(
    profile: HeapProfile, stacks: StackTree, keys: NodeKeys
) -> tuple[HeapProfile, StackTree, np.ndarray]:
    """The profile of `stacks` (the profile's, or a view of them) merged, their tree (its
    node addresses: one of the merged nodes' each; the profile's stack_tree) and the
    value of each of its nodes.

    A node is an entry for the stacks without Python frames that pass it and again for
    those with them (in which the folded nodes are none: their callees hang from their
    callers); each native leaf is one more, as a leaf. Entries are merged a level of the
    tree at a time: those of one caller and one key are one node."""
    tree = stacks.tree
    n = len(tree.parent)
    up = tree.parent.astype(np.int64)
    levels = Levels(tree.depth)
    with_python = tree.depth[stacks.python] > tree.ends[stacks.python]
    plain_leaves, plain_at = _distinct(stacks.native[~with_python])
    python_leaves, python_at = _distinct(stacks.native[with_python])
    # entries: (copy, node) of callers, copy 0 without Python frames and 1 with; leaves
    python_callers = np.r_[up[python_leaves], stacks.python[with_python]]
    nodes = [
        np.flatnonzero(levels.callers(up, up[plain_leaves])),
        np.flatnonzero(levels.callers(up, python_callers)),
    ]
    copy = np.r_[np.zeros(len(nodes[0]), np.int64), np.ones(len(nodes[1]), np.int64)]
    copy = np.r_[copy, np.zeros(len(plain_leaves), np.int64), np.ones(len(python_leaves), np.int64)]
    node = np.concatenate([*nodes, plain_leaves, python_leaves])
    callers = len(nodes[0]) + len(nodes[1])
    # the callers' entries first, then the leaves'
    key = np.r_[keys.caller_key[node[:callers]], keys.leaf_key[node[callers:]]]
    value = np.r_[keys.caller_value[node[:callers]], keys.leaf_value[node[callers:]]]
    skip = (copy == 1) & keys.folded[node]
    parent_slot = copy * n + up[node]  # the slot of an entry's caller in new_id
    width = int(key.max()) + 1 if len(key) else 1

    new_id = np.zeros(2 * n, np.int64)  # per (copy, node); the roots are node 0
    entry_id = np.zeros(len(node), np.int64)
    parents, values, addresses = [np.zeros(1, np.int64)], [np.zeros(1, value.dtype)], []
    addresses.append(tree.address[:1])
    count = 1
    for at in Levels(tree.depth[node]).at[1:]:
        ids = new_id[parent_slot[at]]
        fresh = ~skip[at]
        distinct, which = _distinct(ids[fresh] * width + key[at[fresh]])
        ids[fresh] = count + which
        first = np.empty(len(distinct), np.int64)
        first[which] = at[fresh]  # any entry of each: they name the same
        entry_id[at] = ids
        callers_at = at[at < callers]
        new_id[copy[callers_at] * n + node[callers_at]] = entry_id[callers_at]
        parents.append(distinct // width)
        values.append(value[first])
        addresses.append(tree.address[node[first]])
        count += len(distinct)

    native = np.zeros(len(stacks.native), np.int64)
    native[~with_python] = entry_id[callers + plain_at]
    native[with_python] = entry_id[callers + len(plain_leaves) + python_at]
    native[stacks.native == 0] = 0
    python = np.where(with_python, new_id[n + stacks.python], 0)
    label_texts = sorted(set(profile.labels.values()))
    label = np.zeros(len(native), np.int64)
    for i, text in profile.labels.items():
        label[i] = label_texts.index(text) + 1
    rows, row_of = _distinct_rows(native, python, label)
    # rows in the order of their first stack: reports list stacks as the file does
    row_of = row_of.reshape(-1)
    first = np.full(len(rows), len(row_of), np.int64)
    np.minimum.at(first, row_of, np.arange(len(row_of)))
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    rows, row_of = rows[order], rank[row_of]
    texts = [label_texts[k - 1] if k else "" for k in rows[:, 2].tolist()]
    merged = _summed(profile, row_of, len(rows), texts)
    merged.merged_from = row_of
    tree = Tree(np.concatenate(parents), np.concatenate(addresses))
    merged_stacks = StackTree(tree, rows[:, 0], rows[:, 1], stacks.evaluation)
    merged.set_stack_tree(merged_stacks)
    return merged, merged_stacks, np.concatenate(values)


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True) of non-negative integers, by a sort of the
    values and a hash lookup rather than a sort of their indices."""
    distinct = sorted_unique(values)
    return distinct, index_of(values, distinct)


def _distinct_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of the non-negative int64 `columns`, in sorted order, and the
    row of each (np.unique(axis=0), which compares rows as bytes, by one int64 key
    where the columns' ranges fit in one)."""
    widths = [int(c.max(initial=0)) + 1 for c in columns]
    if np.prod(widths, dtype=float) >= 2**62:
        rows, row_of = np.unique(np.column_stack(columns), axis=0, return_inverse=True)
        return rows, row_of.reshape(-1)
    key = np.zeros(len(columns[0]), np.int64)
    for column, width in zip(columns, widths, strict=True):
        key = key * width + column
    distinct, row_of = _distinct(key)
    rows = np.empty((len(distinct), len(columns)), np.int64)
    rest = distinct.copy()
    for k in range(len(columns) - 1, -1, -1):
        rows[:, k] = rest % widths[k]
        rest //= widths[k]
    return rows, row_of


def _summed(profile: HeapProfile, row_of: np.ndarray, rows: int, labels: list[str]) -> HeapProfile:
    """profile with `rows` stacks, stack i's counts and estimates added to those of row
    row_of[i]; `labels`, each row's label (HAL flags), or '' for none."""

    def added(counts: np.ndarray) -> np.ndarray:
        out = np.zeros(rows, np.int64)
        np.add.at(out, row_of, counts)
        return out

    def summed(values: np.ndarray | None) -> np.ndarray | None:
        if values is None:
            return None
        return np.column_stack(
            [np.bincount(row_of, weights=column, minlength=rows) for column in values.T]
        ).reshape(rows, values.shape[1])

    peak, unreachable, frees = profile.peak, profile.unreachable, profile.frees
    return dataclasses.replace(
        profile,
        addrs=np.zeros(0, np.uint64),
        offsets=np.zeros(1, np.int64),
        cur_objs=added(profile.cur_objs),
        cur_bytes=added(profile.cur_bytes),
        acc_objs=added(profile.acc_objs),
        acc_bytes=added(profile.acc_bytes),
        estimates=summed(profile.estimates),
        stack_ids=None,  # a row holds stacks of several
        peak=None if peak is None else peak.summed(row_of, rows),
        unreachable=None if unreachable is None else unreachable.summed(row_of, rows),
        frees=None if frees is None else frees.summed(row_of, rows),
        live_blocks=None,
        labels={row: text for row, text in enumerate(labels) if text},
    )
