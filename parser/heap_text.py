"""What the readers of heap profiles share: the text of a file decoded, a piece of it
quoted for an error, the memory map section after `MAPPED_LIBRARIES:`."""

from __future__ import annotations

from collections.abc import Iterable

from mem_profiler.core.memory_map import parse_maps_line
from mem_profiler.core.profile import HeapProfile

U64_MAX = 2**64 - 1
NO_NUL = "a NUL byte, which no file name can hold"
MAPPED_LIBRARIES = "MAPPED_LIBRARIES:"


def decode(data: bytes) -> str:
    """A file's bytes as text, those that are not UTF-8 kept (surrogateescape)."""
    return data.decode("utf-8", "surrogateescape")


def read_mappings(prof: HeapProfile, lines: Iterable[tuple[int, str]], fail) -> None:
    """Read the (line number, line) pairs after `MAPPED_LIBRARIES:` into prof.mappings."""
    for lineno, raw in lines:
        line = raw.strip()
        if not line or line.startswith("build="):
            continue
        mapping = parse_maps_line(line)
        if mapping is None:
            raise fail(lineno, f"expected a /proc/<pid>/maps line, found {show(line)}")
        if max(mapping.end, mapping.offset) > U64_MAX or mapping.start > mapping.end:
            raise fail(
                lineno,
                "a mapping whose addresses or offset are above 2^64-1 or"
                f" whose end is below its start: {show(line)}",
            )
        if "\0" in line:
            raise fail(lineno, f"the path of a mapping holds {NO_NUL}")
        prof.mappings.append(mapping)


def show(text: str, limit: int = 60) -> str:
    """Quote a piece of input for an error message, shortened."""
    text = text.strip()
    if not text:
        return "an empty line"
    if not text.isprintable():
        return "binary data (is this a .heap file?)"
    return repr(text if len(text) <= limit else text[:limit] + "...")
