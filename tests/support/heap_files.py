"""Capture files as tests read and tamper with them: a tree-format .heap file's text (its
`#` lines and memory map, decompressed, without the binary arrays between them), and its
header edited in place as a user or an attacker could (docs/file-formats.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from support.tree_files import ZLIB_PREFIX, ZSTD_PREFIX, compressed, decompressed

TREE_LINE = b"\n# tree: "


def _parts(path: Path) -> tuple[bytes, bytes]:
    """The decompressed stream up to its `# tree:` line, and from there on."""
    data = decompressed(path.read_bytes())
    at = data.index(TREE_LINE) + 1
    return data[:at], data[at:]


def heap_text(path: Path) -> str:
    """The file's text lines: heap_v2 as it is; a tree's header lines, its `# tree:` line
    and its MAPPED_LIBRARIES part."""
    if not path.read_bytes().startswith((ZSTD_PREFIX, ZLIB_PREFIX)):
        return path.read_text()
    header, rest = _parts(path)
    tree_line, _, _ = rest.partition(b"\n")
    maps = rest[rest.rindex(b"\nMAPPED_LIBRARIES:\n") :]
    return (header + tree_line + maps).decode()


def edit_heap_header(path: Path, edit: Callable[[str], str], out: Path | None = None) -> None:
    """Write the file (to `out`, else in place) with `edit` applied to its `#` lines
    before the tree, compressed again as the sampler compresses it."""
    header, rest = _parts(path)
    data = edit(header.decode()).encode() + rest
    (out or path).write_bytes(compressed(data))


def edit_heap_paths(path: Path, edit: Callable[[str], str], out: Path) -> None:
    """Write the file to `out` with `edit` applied to its `#` lines before the tree and
    to its memory map (MAPPED_LIBRARIES), as the file of another machine would name
    its objects; the tree between them is kept as it is."""
    header, rest = _parts(path)
    at = rest.rindex(b"\nMAPPED_LIBRARIES:\n")
    data = edit(header.decode()).encode() + rest[:at] + edit(rest[at:].decode()).encode()
    out.write_bytes(compressed(data))
