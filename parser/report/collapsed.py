"""Collapsed stacks, a line each (`root;...;leaf value`), as flamegraph.pl and speedscope
read them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from mem_profiler.parser.model.flame_tree import collapsed_lines

if TYPE_CHECKING:
    from mem_profiler.parser.report.formats import Rendering

_PIECE_CHARS = 1 << 20  # written a megabyte or so at a time: a report too large to hold


def render(r: Rendering) -> Iterator[bytes]:
    req = r.request
    return _encoded(collapsed_lines(r.named, req.index, lines=req.lines, full_names=req.full_names))


def _encoded(lines: Iterable[str]) -> Iterator[bytes]:
    """`lines` encoded, _PIECE_CHARS or so at a time."""
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size > _PIECE_CHARS:
            yield "".join(batch).encode("utf-8", "surrogateescape")
            batch, size = [], 0
    yield "".join(batch).encode("utf-8", "surrogateescape")
