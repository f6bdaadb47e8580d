"""The stacks of a profile's notes (its failed allocations, its foreign ranges)
symbolized in one go, for the reports that list each with its stack."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from mem_profiler.core.profile import Failure, Foreign, HeapProfile, stacks_only
from mem_profiler.parser.symbols.symbolize import innermost_python, symbolize

Note = TypeVar("Note", bound=Failure | Foreign)


def symbolized_notes(
    profile: HeapProfile,
    notes: list[Note],
    binary: str | None,
    allow_mismatch: bool = False,
    full_names: bool = False,
    sysroot: str | None = None,
) -> list[tuple[Note, list[str], int | None]]:
    """Each of the profile's `notes` (its failures or its foreign ranges, or both) with its
    stack's function names, innermost first, and where its innermost Python frame is."""
    if not notes:
        return []
    stacks = [n.stack for n in notes]
    as_samples = stacks_only(
        profile,
        np.array([a for s in stacks for a in s], np.uint64),
        np.concatenate([[0], np.cumsum([len(s) for s in stacks])]).astype(np.int64),
    )
    sym = symbolize(as_samples, binary, allow_mismatch=allow_mismatch, sysroot=sysroot)
    names, node_of = sym.node_names(full_names=full_names)
    python = sym.python_locations()
    named = []
    for i, n in enumerate(notes):
        stack = sym.frames[sym.offsets[i] : sym.offsets[i + 1]].tolist()
        named.append(
            (n, [names[node] for node in node_of[stack].tolist()], innermost_python(stack, python))
        )
    return named
