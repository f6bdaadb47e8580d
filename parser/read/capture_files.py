"""Which .heap files a mem_parser invocation means: files, or a capture's prefix
(`/tmp/svc_4242.0001` stands for its host file and every device heap's file), narrowed
to one heap by name."""

from __future__ import annotations

import os

from mem_profiler.core.errors import HeapFileError, UserError
from mem_profiler.core.file_names import window_files
from mem_profiler.core.heaps import HEAPS
from mem_profiler.parser.read.heap_file import read_heap_header


def heap_of(path: str) -> str:
    """The heap a file holds, from its `# heap:` line (host when it has none)."""
    try:
        return read_heap_header(path).heap
    except HeapFileError:
        return "host"  # read_heap reports the problem, with the file's name


def capture_files(spec: str) -> dict[str, str | None]:
    """A file as it is (its heap not yet known: None), or the files of the capture a prefix
    names, with their heaps."""
    if os.path.exists(spec):
        return {spec: None}
    files: dict[str, str | None] = {path: heap for heap, path in window_files(spec).items()}
    if not files:
        raise UserError(
            f"{spec} does not exist (a .heap file, or a capture's prefix such as"
            " /tmp/svc_4242.0001)."
        )
    return files


def select_files(specs: list[str], heap: str | None) -> list[tuple[str, str]]:
    """(heap, file) for every file the specs name, one heap's only if `heap` is given."""
    if heap is not None and heap not in HEAPS:
        raise UserError(f"unknown heap {heap!r}: one of {', '.join(HEAPS)}.")
    chosen = [
        (known or heap_of(f), f) for spec in specs for f, known in capture_files(spec).items()
    ]
    if heap is not None:
        chosen = [(h, f) for h, f in chosen if h == heap]
        if not chosen:
            raise UserError(f"no {heap} heap among {', '.join(specs)}.")
    heaps = [h for h, _ in chosen]
    if len(set(heaps)) < len(heaps):
        raise UserError("two files of the same heap: give one capture at a time, or --heap.")
    return chosen
