"""A memory mapping: one line of /proc/<pid>/maps, as the kernel writes it and a .heap
file's MAPPED_LIBRARIES section keeps it. Apart from heapfile, which imports numpy, so
that code which reads /proc itself can take the same type without it."""

from __future__ import annotations

from dataclasses import dataclass


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
