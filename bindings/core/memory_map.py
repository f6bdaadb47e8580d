"""A memory mapping: one line of /proc/<pid>/maps, as the kernel writes it and a .heap
file's MAPPED_LIBRARIES section keeps it. Apart from the heap file reader, which imports numpy, so
that code which reads /proc itself can take the same type without it."""

from __future__ import annotations

import re
from dataclasses import dataclass

# start-end perms offset dev inode [path]
_LINE_RE = re.compile(
    r"([0-9a-fA-F]+)-([0-9a-fA-F]+)\s+(\S{4})\s+([0-9a-fA-F]+)\s+\S+\s+[0-9]+(?:\s+(.*))?"
)


@dataclass(frozen=True)
class MemoryMapping:
    """One line of /proc/<pid>/maps."""

    start: int
    end: int
    perms: str
    offset: int
    path: str  # "" for an anonymous mapping

    @property
    def executable(self) -> bool:
        return "x" in self.perms


def parse_maps_line(line: str) -> MemoryMapping | None:
    """A maps line (surrounding blanks stripped) as a MemoryMapping; None if it is not one.
    The kernel writes a newline in a path as \\012."""
    m = _LINE_RE.fullmatch(line)
    if m is None:
        return None
    start, end, offset = (int(m[k], 16) for k in (1, 2, 4))
    return MemoryMapping(start, end, m[3], offset, (m[5] or "").replace("\\012", "\n"))
