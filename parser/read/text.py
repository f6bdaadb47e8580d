"""What the readers of heap profiles share: the text of a file decoded, a piece of it
quoted for an error, the memory map section after `MAPPED_LIBRARIES:` (or, in the
legacy profiles of other tools, `--- Memory map: ---`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.memory_map import MemoryMapping, parse_maps_line
from mem_profiler.core.profile import HeapProfile

U64_MAX = 2**64 - 1
NO_NUL = "a NUL byte, which no file name can hold"
# The error of a reader at a line of its file: (line number, what is wrong) -> error
LineError = Callable[[int, str], HeapFileError]
MAPPED_LIBRARIES = "MAPPED_LIBRARIES:"


def decode(data: bytes) -> str:
    """A file's bytes as text, those that are not UTF-8 kept (surrogateescape)."""
    return data.decode("utf-8", "surrogateescape")


def read_mappings(prof: HeapProfile, lines: Iterable[tuple[int, str]], fail: LineError) -> None:
    """Read the (line number, line) pairs after `MAPPED_LIBRARIES:` into prof.mappings."""
    for lineno, raw in lines:
        line = raw.strip()
        if not line or line.startswith("build="):
            continue
        mapping = parse_maps_line(line)
        if mapping is None:
            raise fail(lineno, f"expected a /proc/<pid>/maps line, found {show(line)}")
        _check_mapping(mapping, lineno, line, fail)
        prof.mappings.append(mapping)


def _check_mapping(mapping: MemoryMapping, lineno: int, line: str, fail: LineError) -> None:
    if max(mapping.end, mapping.offset) > U64_MAX or mapping.start > mapping.end:
        raise fail(
            lineno,
            "a mapping whose addresses or offset are above 2^64-1 or"
            f" whose end is below its start: {show(line)}",
        )
    if "\0" in line:
        raise fail(lineno, f"the path of a mapping holds {NO_NUL}")


# The short form of a mapping in heapz's and other tools' memory maps, as pprof's
# legacy_profile.go reads it: `START-END[:] [PERMS] [FILE] [(@OFFSET)] [BUILD_ID]`.
_BRIEF_MAP_RE = re.compile(
    r"\s*(?:0x)?([0-9a-fA-F]{1,16})[\s-]?\s*(?:0x)?([0-9a-fA-F]{1,16}):?(?:\s+([-rwxp]+))?"
    r"(?:\s+(\S+))?(?:\s+\(@([0-9a-fA-F]{1,16})\))?(?:\s+([0-9a-fA-F]+))?"
)


def read_legacy_mappings(
    prof: HeapProfile, lines: Iterable[tuple[int, str]], fail: LineError
) -> None:
    """The memory map of another tool's legacy profile, read as pprof reads it: lines of
    /proc/<pid>/maps or the short form `START-END: FILE`, `NAME=VALUE` lines whose
    `$NAME` later lines use (heapz's `source=`), anything else skipped; mappings that
    are not executable left out."""
    names: dict[str, str] = {}
    for lineno, raw in lines:
        line = raw.strip()
        for name, value in names.items():
            line = line.replace(name, value)
        mapping = parse_maps_line(line)
        brief = _BRIEF_MAP_RE.match(line) if mapping is None else None
        if brief is not None:
            start, end, offset = (int(brief[k] or "0", 16) for k in (1, 2, 5))
            mapping = MemoryMapping(start, end, brief[3] or "r-xp", offset, brief[4] or "")
            if brief[6] and mapping.path:
                prof.build_ids.setdefault(mapping.path, brief[6].lower())
        if mapping is None:
            name, eq, value = line.partition("=")
            if eq and name.strip() and not name.lstrip().startswith("#"):
                names["$" + name.strip()] = value.strip()
            continue
        _check_mapping(mapping, lineno, line, fail)
        if mapping.executable:
            prof.mappings.append(mapping)


def show(text: str) -> str:
    """What a piece of input is, for an error message, without its content: an error
    never echoes a file (its reader may be reading it for another user, a terminal runs
    what it holds); the line number says where to look."""
    text = text.strip()
    if not text:
        return "an empty line"
    if not text.isprintable():
        return "binary data (is this a .heap file?)"
    return f"text of {len(text)} characters"
