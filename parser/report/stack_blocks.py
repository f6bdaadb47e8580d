"""Reports of a block per stack (leaks, lifetimes): each row's heading, then its stack,
leaf first, indented; a line for the rows left out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from mem_profiler.core.escape import visible


class HasStack(Protocol):
    stack: list[str]  # function names, leaf first


Row = TypeVar("Row", bound=HasStack)


def stack_blocks(rows: Sequence[Row], nodecount: int | None, heading: Callable[[Row], str]) -> str:
    """The blocks of `rows` (at most nodecount), each its rank (from 1), `heading(row)`
    and the row's stack."""
    out = []
    for rank, row in enumerate(rows[:nodecount], 1):
        out.append(f"\n#{rank} {heading(row)}\n")
        out += [f"    {visible(name)}\n" for name in row.stack]
    if nodecount is not None and len(rows) > nodecount:
        out.append(f"\n... and {len(rows) - nodecount} more stack(s)\n")
    return "".join(out)
