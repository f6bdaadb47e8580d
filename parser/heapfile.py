"""Strict reader of `.heap` files (jemalloc heap_v2 with `# key: value` lines)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from mem_profiler.parser.errors import HeapFileError

# jeprof's counter regex; group 2 is the thread ("*" for the total over threads).
_COUNTER_RE = re.compile(r"^\s*(t(\*|\d+)):\s+(\d+):\s+(\d+)\s+\[\s*(\d+):\s+(\d+)\]\s*$")
_HEX_RE = re.compile(r"(?:0x)?[0-9a-fA-F]{1,16}")
_HEADER_RE = re.compile(r"heap_v2/(\d+)")
_MAPS_RE = re.compile(
    r"([0-9a-fA-F]+)-([0-9a-fA-F]+)\s+(\S{4})\s+([0-9a-fA-F]+)\s+\S+\s+\d+(?:\s+(.*))?"
)
_MAPPED_LIBRARIES = "MAPPED_LIBRARIES:"


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/<pid>/maps."""

    start: int
    end: int
    perms: str
    offset: int
    path: str  # "" for an anonymous mapping

    @property
    def executable(self) -> bool:
        return "x" in self.perms


@dataclass
class HeapProfile:
    """The contents of one .heap file, counts still raw (sampled)."""

    path: str
    rate: int
    version: str = ""
    pid: int | None = None
    cmdline: str | None = None
    exe: str | None = None
    heap: str = "host"
    meta: dict[str, str] = field(default_factory=dict)
    build_ids: dict[str, str] = field(default_factory=dict)
    dropped_samples: int = 0
    stacks: list[tuple[int, ...]] = field(default_factory=list)
    cur_objs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cur_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    acc_objs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    acc_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mappings: list[Mapping] = field(default_factory=list)


def read_heap(path: str | os.PathLike[str]) -> HeapProfile:
    """Read and validate a .heap file; raise HeapFileError on any problem."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise HeapFileError(f"{name} is a directory, not a .heap file.")
    try:
        with open(name, encoding="utf-8", errors="surrogateescape", newline=None) as f:
            text = f.read()
    except FileNotFoundError:
        raise HeapFileError(f"{name} does not exist.") from None
    except OSError as e:
        raise HeapFileError(f"cannot read {name}: {e.strerror or e}.") from None
    return parse_heap(text, name)


def parse_heap(text: str, name: str = "<heap>") -> HeapProfile:
    """Parse the text of a .heap file; `name` is used in error messages."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise HeapFileError(f"{name}:1: the file is empty, expected a 'heap_v2/<rate>' header")

    def fail(lineno: int, what: str) -> HeapFileError:
        return HeapFileError(f"{name}:{lineno}: {what}")

    header = _HEADER_RE.fullmatch(lines[0].strip())
    if header is None:
        raise fail(1, f"expected a 'heap_v2/<rate>' header, found {_show(lines[0])}")
    prof = HeapProfile(path=name, rate=int(header.group(1)))

    counters: list[tuple[int, int, int, int]] = []
    values: dict[str, int] = {}  # hex token -> address; stacks share most of their frames
    awaiting = 0  # line number of a stack still waiting for its t* line
    maps_at = 0
    for lineno, line in enumerate(lines[1:], 2):
        if awaiting:
            m = _COUNTER_RE.match(line)
            if m is None or m[2] != "*":
                raise fail(lineno, f"expected a counter line after the stack on line {awaiting}"
                           f" ('t*: <objs>: <bytes> [<objs>: <bytes>]'), found {_show(line)}")
            if max(len(m[3]), len(m[4]), len(m[5]), len(m[6])) > 18:
                raise fail(lineno, "a counter too large for 64 bits")
            counters.append((int(m[3]), int(m[4]), int(m[5]), int(m[6])))
            awaiting = 0
        elif line[:1] == "@":
            parts = line.split()
            if parts[0] != "@" or len(parts) == 1:
                raise fail(lineno, f"expected '@' followed by hex addresses, found {_show(line)}")
            del parts[0]
            try:
                prof.stacks.append(tuple(map(values.__getitem__, parts)))
            except KeyError:
                for token in parts:
                    if token not in values:
                        if _HEX_RE.fullmatch(token) is None:
                            raise fail(lineno, f"bad address {_show(token)} in the stack") from None
                        values[token] = int(token, 16)
                prof.stacks.append(tuple(map(values.__getitem__, parts)))
            awaiting = lineno
        elif line[:1] == "#":
            try:
                _header_line(prof, line)
            except ValueError as e:
                raise fail(lineno, str(e)) from None
        elif line.startswith(_MAPPED_LIBRARIES):
            maps_at = lineno
            break
        elif line.lstrip()[:1] == "t":
            m = _COUNTER_RE.match(line)
            if m is None:
                raise fail(lineno, f"garbled counter line {_show(line)}")
            if prof.stacks and m[2] == "*":
                raise fail(lineno, "a second 't*' counter line for one stack")
        elif line.strip():
            raise fail(lineno, f"unexpected line {_show(line)}")
    if awaiting:
        raise fail(len(lines) + 1, f"expected a counter line after the stack on line {awaiting},"
                   " the file is truncated")
    if not maps_at:
        raise fail(len(lines) + 1, f"the file is truncated: no '{_MAPPED_LIBRARIES}' section")

    for i in range(maps_at, len(lines)):
        line = lines[i].strip()
        if not line or line.startswith("build="):
            continue
        m = _MAPS_RE.fullmatch(line)
        if m is None:
            raise fail(i + 1, f"expected a /proc/<pid>/maps line, found {_show(line)}")
        prof.mappings.append(Mapping(int(m[1], 16), int(m[2], 16), m[3], int(m[4], 16),
                                     m[5] or ""))

    table = np.array(counters, dtype=np.int64).reshape(-1, 4)
    prof.cur_objs, prof.cur_bytes, prof.acc_objs, prof.acc_bytes = (
        np.ascontiguousarray(table[:, k]) for k in range(4))
    return prof


def _header_line(prof: HeapProfile, line: str) -> None:
    """Store one `# ...` line in `prof`; ValueError says what is wrong with it."""
    body = line[1:].strip()
    if body.startswith("mem_profiler "):
        prof.version = body.split(None, 1)[1]
        return
    key, sep, value = body.partition(":")
    if not sep:
        return  # a free-form comment
    key, value = key.strip(), value.strip()
    if key in ("pid", "dropped_samples"):
        if not value.isdigit():
            raise ValueError(f"'{key}' must be a number, found {_show(value)}")
        setattr(prof, key, int(value))
    elif key in ("cmdline", "exe", "heap"):
        setattr(prof, key, value)
    elif key == "build_id":
        obj, _, hexid = value.rpartition(" ")
        if not obj or not re.fullmatch(r"[0-9a-fA-F]+", hexid):
            raise ValueError(f"expected '# build_id: <path> <hex>', found {_show(line)}")
        prof.build_ids[obj] = hexid.lower()
    else:
        prof.meta[key] = value


def _show(text: str, limit: int = 60) -> str:
    """Quote a piece of input for an error message, shortened."""
    text = text.strip()
    if not text:
        return "an empty line"
    if not text.isprintable():
        return "binary data (is this a .heap file?)"
    return repr(text if len(text) <= limit else text[:limit] + "...")
