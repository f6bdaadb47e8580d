"""The flame graph as one self-contained HTML page (the page itself is in flame_page)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mem_profiler.core.escape import script_json, visible
from mem_profiler.core.heaps import HEAP_HUES
from mem_profiler.core.units import REPORT_UNITS
from mem_profiler.parser.common.sampling import index_unit
from mem_profiler.parser.model.flame_tree import FlameTree, flame_tree
from mem_profiler.parser.report.flame_page import PAGE

if TYPE_CHECKING:
    from mem_profiler.parser.report.formats import Rendering

# Frames lighter than this share of the whole are left out of the page, as flamegraph.pl
# leaves out frames under 0.1 pixel: a profile of 10^5 scattered stacks would otherwise
# make a page of millions of frames.
MIN_SHARE = 1e-4


def format_flame_html(
    tree: FlameTree, title: str, notes: Sequence[str] = (), diff: bool = False, heap: str = "host"
) -> str:
    """The page, with the tree (frames of at least MIN_SHARE of the weight) as JSON.

    `notes` are shown under the title; frames are coloured by name in the heap's hue, or
    with `diff` by growth (red) and shrinkage (blue)."""
    roots = tree.parent < 0
    keep = tree.weight >= max(float(tree.weight[roots].sum()) * MIN_SHARE, 1e-300)
    new_id = np.cumsum(keep) - 1  # parents come first, so ancestors of kept nodes are kept
    parent = tree.parent[keep]
    used, name = np.unique(tree.name[keep], return_inverse=True)
    data = {
        "title": title,
        "index": tree.index,
        "notes": list(notes),
        "diff": diff,
        "heap": heap,
        "hue": HEAP_HUES.get(heap, HEAP_HUES["host"]),
        "unit": index_unit(tree.index),
        "units": "" if index_unit(tree.index) == "objects" else REPORT_UNITS,
        "total": round(tree.total, 2),
        "share_of": round(float(tree.weight[roots].sum()), 2),  # as share_base
        "names": [tree.names[i] for i in used.tolist()],
        "name": name.tolist(),
        "parent": np.where(parent < 0, -1, new_id[np.maximum(parent, 0)]).tolist(),
        "value": np.round(tree.value[keep], 2).tolist(),
        "weight": np.round(tree.weight[keep], 2).tolist(),
    }
    head, rest = PAGE.split("__TITLE__")
    middle, tail = rest.split("__DATA__")
    return head + html.escape(visible(title)) + middle + script_json(data) + tail


def render(r: Rendering) -> bytes:
    """--flame: the page of the profile's flame tree."""
    req = r.request
    tree = flame_tree(r.named, req.index, lines=req.lines, full_names=req.full_names)
    return format_flame_html(
        tree, req.title, r.notes, diff=req.base is not None, heap=r.named.profile.heap
    ).encode("utf-8", "surrogateescape")
