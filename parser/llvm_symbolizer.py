"""Lines and inlined calls of code addresses read by LLVM's llvm-symbolizer, as pprof
reads them: one process per object, every address in one batch. It reads DWARF in C++,
some hundred times faster than pyelftools, which stays the reader where it is not
installed or cannot read the object (elf_image._DwarfCache). (binutils' addr2line is as
fast, but 2.40's names the including file for code of a header.)"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess

import numpy as np

from mem_profiler.parser import symcache

KIND = "symbolized"  # its symcache kind

Place = tuple[str, int]
Chain = list[tuple[str, Place | None]]


@functools.cache
def program() -> str | None:
    """llvm-symbolizer's path, if installed."""
    return shutil.which("llvm-symbolizer")


def _place(frame: dict) -> Place | None:
    name, line = frame.get("FileName"), frame.get("Line")
    return (name, line) if name and isinstance(line, int) and line > 0 else None


def resolve(path: str, vaddrs: np.ndarray) -> list[tuple[Place | None, Chain]] | None:
    """For each vaddr, its (file, line) and the calls inlined there, innermost first:
    (the inlined function's name, as linked, and the site where its caller calls it).
    None when llvm-symbolizer is missing or cannot read the object."""
    tool = program()
    if tool is None:
        return None
    query = "".join(f"0x{a:x}\n" for a in np.asarray(vaddrs, np.uint64).tolist())
    try:
        done = subprocess.run(
            [tool, f"--obj={path}", "--inlining", "--no-demangle", "--output-style=JSON"],
            input=query.encode(),
            capture_output=True,
            check=False,
        )
        answers = [json.loads(line) for line in done.stdout.splitlines()]
    except (OSError, ValueError):
        return None
    if done.returncode != 0 or len(answers) != len(vaddrs):
        return None
    out: list[tuple[Place | None, Chain]] = []
    for answer in answers:
        frames = answer.get("Symbol") if isinstance(answer, dict) else None
        if not isinstance(frames, list) or not frames or "Error" in answer:
            return None
        # innermost first: each frame's place is where the next one out calls it; the
        # last is the function the code is in, which the symbol table names
        chain = [
            (str(frames[k].get("FunctionName")), _place(frames[k + 1]))
            for k in range(len(frames) - 1)
        ]
        out.append((_place(frames[0]), chain))
    return out


Answer = tuple[Place | None, Chain]


def to_arrays(answers: dict[int, Answer]) -> dict[str, np.ndarray]:
    """Answers by address as arrays, for the symbol cache (symcache)."""
    strings: dict[str, int] = {}

    def place_of(place: Place | None) -> tuple[int, int]:
        return (-1, 0) if place is None else (strings.setdefault(place[0], len(strings)), place[1])

    addrs = sorted(answers)
    places, links, starts = [], [], [0]
    for a in addrs:
        place, chain = answers[a]
        places.append(place_of(place))
        for name, site in chain:
            links.append((strings.setdefault(name, len(strings)), *place_of(site)))
        starts.append(len(links))
    return {
        "addrs": np.array(addrs, np.uint64),
        "places": np.array(places, np.int64).reshape(-1, 2),
        "starts": np.array(starts, np.int64),
        "links": np.array(links, np.int64).reshape(-1, 3),
        "strings": symcache.pack_strings(list(strings)),
        "nstrings": np.array([len(strings)], np.int64),
    }


def from_arrays(arrays: dict[str, np.ndarray] | None) -> dict[int, Answer]:
    """The answers to_arrays saved; {} for none, or for arrays of another layout."""
    if arrays is None:
        return {}
    try:
        strings = symcache.unpack_strings(arrays["strings"], int(arrays["nstrings"][0]))
        places, starts = arrays["places"].tolist(), arrays["starts"].tolist()
        links = arrays["links"].tolist()

        def place_of(file: int, line: int) -> Place | None:
            return None if file < 0 else (strings[file], line)

        return {
            a: (
                place_of(*places[i]),
                [(strings[n], place_of(f, ln)) for n, f, ln in links[starts[i] : starts[i + 1]]],
            )
            for i, a in enumerate(arrays["addrs"].tolist())
        }
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
