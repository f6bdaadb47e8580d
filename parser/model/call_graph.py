"""The call graph of a profile: nodes with flat and cum values, caller -> callee edges,
pruned the way pprof prunes it (its `graph` package and `newTrimmedGraph` are the model).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from mem_profiler.parser.common.arrays import name_ranks, sorted_unique
from mem_profiler.parser.model.aggregate import node_frames, share_base
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile


@dataclass
class Edge:
    """Calls from `caller` to `callee` (indexes into CallGraph.names)."""

    caller: int
    callee: int
    weight: float  # value of the samples whose stacks make this call (once per stack)
    residual: bool  # the call goes through nodes that were dropped: drawn dotted


@dataclass
class CallGraph:
    """The nodes kept, heaviest |cum| first, and the edges between them."""

    index: str  # the sample index the values are of
    total: float  # of all samples (the diff NEW - OLD with --base)
    share_of: float  # what the shares (%) and the cutoffs are of: share_base
    names: list[str]
    flat: np.ndarray  # float64 per node
    cum: np.ndarray  # float64 per node
    edges: list[Edge]
    node_cutoff: float  # nodes with |cum| below it were dropped
    edge_cutoff: float  # edges with |weight| below it were dropped
    dropped_nodes: int  # below node_cutoff
    dropped_edges: int  # below edge_cutoff
    nodes_before_top: int  # nodes above node_cutoff, of which nodecount were kept


@dataclass
class _Stacks:
    """The profile's frames as node ids, with what the weights need."""

    nodes: np.ndarray  # node of every frame, leaf first, stacks concatenated
    stack_of: np.ndarray  # stack of every frame
    leaf: np.ndarray  # bool per frame: the leaf of its stack
    values: np.ndarray  # per stack


@dataclass
class _Weights:
    flat: np.ndarray
    cum: np.ndarray
    callers: np.ndarray
    callees: np.ndarray
    weights: np.ndarray
    residual: np.ndarray


def call_graph(
    sym: SymbolizedProfile,
    index: str = "inuse_space",
    *,
    lines: bool = False,
    full_names: bool = False,
    nodefraction: float = 0.005,
    edgefraction: float = 0.001,
    nodecount: int | None = 80,
) -> CallGraph:
    """Build the graph, then drop nodes with |cum| < nodefraction*share_of, keep the
    `nodecount` heaviest by |cum|, drop edges with |weight| < edgefraction*share_of and
    dotted edges whose callee is reached another way (as pprof's RemoveRedundantEdges)."""
    names, nodes = node_frames(sym, lines, full_names)
    lengths = np.diff(sym.offsets)
    leaf = np.zeros(len(sym.frames), bool)
    leaf[sym.offsets[:-1][lengths > 0]] = True
    stacks = _Stacks(nodes, np.repeat(np.arange(len(lengths)), lengths), leaf, sym.value(index))
    n = len(names)
    share_of = share_base(stacks.values)
    node_cutoff, edge_cutoff = share_of * nodefraction, share_of * edgefraction

    full = _weights(stacks, n, np.ones(n, bool))
    present = (full.cum != 0) | (full.flat != 0)
    kept = present & (np.abs(full.cum) >= node_cutoff)
    dropped_nodes = int(present.sum() - kept.sum())
    nodes_before_top = int(kept.sum())
    by_name = name_ranks(names)
    if nodecount is not None and nodes_before_top > nodecount:
        order = np.lexsort((by_name, -np.abs(full.cum)))
        kept = np.zeros(n, bool)
        kept[order[present[order] & (np.abs(full.cum[order]) >= node_cutoff)][:nodecount]] = True
    w = _weights(stacks, n, kept)

    shown = np.flatnonzero(kept)
    shown = shown[np.lexsort((by_name[shown], -np.abs(w.cum[shown])))]
    position = np.full(n, -1, np.int64)
    position[shown] = np.arange(len(shown))
    heavy = np.abs(w.weights) >= edge_cutoff
    edges = [
        Edge(int(position[a]), int(position[b]), float(x), bool(r))
        for a, b, x, r in zip(
            w.callers[heavy], w.callees[heavy], w.weights[heavy], w.residual[heavy], strict=True
        )
    ]
    return CallGraph(
        index,
        float(stacks.values.sum()),
        share_of,
        [names[i] for i in shown.tolist()],
        w.flat[shown],
        w.cum[shown],
        _without_redundant(edges, len(shown)),
        node_cutoff,
        edge_cutoff,
        dropped_nodes,
        int((~heavy).sum()),
        nodes_before_top,
    )


def _weights(stacks: _Stacks, n: int, kept: np.ndarray) -> _Weights:
    """Flat, cum and edge weights over the kept nodes only, as pprof's newGraph: cum and
    each edge once per stack, flat only where the leaf itself is kept, no self edges,
    and an edge residual where dropped frames lie between its two ends."""
    keep = kept[stacks.nodes]
    at = np.flatnonzero(keep)
    nodes, stack_of = stacks.nodes[at], stacks.stack_of[at]
    leaves = stacks.leaf & keep
    flat = np.bincount(
        stacks.nodes[leaves], weights=stacks.values[stacks.stack_of[leaves]], minlength=n
    )
    stack, node = np.divmod(sorted_unique(stack_of * n + nodes, overwrite=True), max(n, 1))
    cum = np.bincount(node, weights=stacks.values[stack], minlength=n)

    # Leaf first: the callee of frame j is frame j, its caller frame j+1 (same stack).
    call = (stack_of[1:] == stack_of[:-1]) & (nodes[1:] != nodes[:-1])
    callers, callees = nodes[1:][call], nodes[:-1][call]
    gaps = (at[1:] - at[:-1])[call] > 1
    edge_keys, edge_of = np.unique(callers * n + callees, return_inverse=True)
    stack, edge = np.divmod(
        sorted_unique(stack_of[:-1][call] * len(edge_keys) + edge_of, overwrite=True),
        max(len(edge_keys), 1),
    )
    weights = np.bincount(edge, weights=stacks.values[stack], minlength=len(edge_keys))
    residual = np.bincount(edge_of, weights=gaps, minlength=len(edge_keys)) > 0
    callers, callees = np.divmod(edge_keys, max(n, 1))
    return _Weights(flat, cum, callers, callees, weights, residual)


def _without_redundant(edges: list[Edge], n: int) -> list[Edge]:
    """Drop residual edges whose callee the caller reaches through other edges, lightest
    first, stopping at a callee's first non-residual edge (pprof RemoveRedundantEdges)."""
    incoming: list[list[Edge]] = [[] for _ in range(n)]
    for e in edges:
        incoming[e.callee].append(e)
    for node in reversed(range(n)):
        for e in sorted(incoming[node], key=lambda e: abs(e.weight)):
            if not e.residual:
                break
            if _reaches(e, incoming):
                incoming[node].remove(e)
    kept = {id(e) for ins in incoming for e in ins}
    return [e for e in edges if id(e) in kept]


def _reaches(edge: Edge, incoming: list[list[Edge]]) -> bool:
    """Whether edge.caller reaches edge.callee without `edge` (a walk up the callers)."""
    seen = {edge.callee}
    queue = deque([edge.callee])
    while queue:
        for e in incoming[queue.popleft()]:
            if e is edge or e.caller in seen:
                continue
            if e.caller == edge.caller:
                return True
            seen.add(e.caller)
            queue.append(e.caller)
    return False
