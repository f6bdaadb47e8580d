"""Stacks of a capture as function names, for tests that check what an unwinder found."""

from __future__ import annotations

from pathlib import Path

from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.symbols.symbolize import symbolize


def named_stacks(heap: Path, exe: Path) -> list[tuple[int, list[str]]]:
    """(allocations, function names leaf first) of every stack."""
    sym = symbolize(read_heap(heap), exe)
    names, node_of = sym.node_names()
    bounds = sym.offsets.tolist()
    return [
        (objs, [names[n] for n in node_of[sym.frames[a:b]]])
        for objs, a, b in zip(sym.profile.acc_objs.tolist(), bounds[:-1], bounds[1:], strict=True)
    ]


def in_order(names: list[str], wanted: list[str]) -> bool:
    """wanted is a subsequence of names."""
    rest = iter(names)
    return all(w in rest for w in wanted)


def paths_taken(truth: Path, depth: int) -> dict[str, int]:
    """{path: bytes} that tests/fixtures/call_paths.c wrote to `truth`, root first from
    main or thread_main, its 500-deep recursion cut as a depth limit of `depth` cuts it."""
    expected = {}
    for line in truth.read_text().splitlines():
        size, path = line.split(" ", 1)
        expected[path.replace("recurse*500", ";".join(["recurse"] * (depth - 1)))] = int(size)
    return expected


def collapsed_paths(collapsed: str) -> dict[str, int]:
    """{path: bytes} of `mem_parser --collapsed` output, each from the entry the program
    names (main, thread_main), or whole where the depth limit cut it."""
    found: dict[str, int] = {}
    for line in collapsed.splitlines():
        path, value = line.rsplit(" ", 1)
        frames = path.split(";")
        entry = next((i for i, f in enumerate(frames) if f in ("main", "thread_main")), 0)
        key = ";".join(frames[entry:])
        found[key] = found.get(key, 0) + int(value)
    return found
