"""The `#` lines of a `.heap` file, ours in every format (`# key: value`, the Python
frames' records, the noted events), as the tree, heap_v2 and a live window's snapshots
hold them."""

from __future__ import annotations

import re
from typing import TypeVar

from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.profile import (
    FOREIGN_KINDS,
    FRAME_BASE,
    FRAME_END,
    Drops,
    Failure,
    Foreign,
    HeapProfile,
    PythonFrame,
)
from mem_profiler.parser.read.text import (
    NO_NUL,
    U64_MAX,
    decode,
    show,
)


def _frame_fields(text: str) -> str:
    """The fields of a `# python_frame:` line, its name and file each matched by `text`."""
    numbers = r"0x(?P<address>[0-9a-f]{1,16}) (?P<line>-1|\d{1,10}) (?P<first_line>\d{1,10})"
    return numbers + f" (?P<name>{text})\t(?P<file>{text})"


_FRAME_RE = re.compile(_frame_fields(r"[^\t]*"))


# `# key: N` lines and the largest N each may hold.
_NUMBERS = {
    "pid": 2**31 - 1,
    "forked_from": 2**31 - 1,
    "max_depth": 2**32 - 1,
    **dict.fromkeys(
        (
            "dropped_samples",
            "failed_allocs",
            "foreign_unrecorded",
            "window_start_ns",
            "window_end_ns",
            "live_bytes",
            "peak_live_bytes",
            "peak_time_ns",
            "peak_stacks_bytes",
            "python_frames_left_out",
        ),
        U64_MAX,
    ),
}


# `#` lines whose text the sampler escapes (see _unescape), and those of them that are paths.
_ESCAPED = ("cmdline", "exe", "build_id", "log", "warning", "pool_note")


_PATHS = ("exe", "build_id", "log")


_ESCAPE_RE = re.compile(r"\\(?:([\\nrt])|x([0-7][0-9a-f])|(x.{0,2}|.?))", re.S)


_UNESCAPED = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


_DROPPED_RE = re.compile(
    r"stack_table=([0-9]{1,20}) live_table=([0-9]{1,20})"
    r" memory=([0-9]{1,20}) bytes=([0-9]{1,20})"
)


FRAME_LINE = b"# python_frame:"


# a `# python_frame:` line exactly as our sampler writes it, for the bulk reader: nothing
# escaped, nothing around the fields
_CANONICAL_FRAME_RE = re.compile(
    ("# python_frame: " + _frame_fields(r"[^\t\n\\]*") + "\n").encode()
)


_Note = TypeVar("_Note", Failure, Foreign)


Noted = tuple["Failure | Foreign", int]  # a tree's noted event, and the id of its stack


_PYTHON_RE = re.compile(r"\S{1,64} 0x[0-9a-f]{1,16}(?: 0x[0-9a-f]{1,16})?")


# The lines of noted events: their decimal fields, checked below 2^64, and their stack:
# its addresses in a heap_v2 file, its id (a row of `stack_id`, -1: none) in a tree.
_NOTE_NUMBERS = ("time_ns", "bytes", "error")


_NOTE_STACK = r" @(?P<stack>(?: (?:0x)?[0-9a-f]{1,16})*)"


_NOTE_STACK_ID = r" stack=(?P<stack_id>-1|[0-9]{1,10})"


_FAILURE = (
    r"time_ns=(?P<time_ns>[0-9]{1,20}) bytes=(?P<bytes>[0-9]{1,20})"
    r" error=(?P<error>-?[0-9]{1,20})"
)


_FOREIGN = (
    r"time_ns=(?P<time_ns>[0-9]{1,20}) bytes=(?P<bytes>[0-9]{1,20})"
    rf" kind=(?P<kind>{'|'.join(FOREIGN_KINDS)})"
    r" address=0x(?P<address>[0-9a-f]{1,16})"
)


_FAILURE_RE, _FAILURE_ID_RE = (
    re.compile(_FAILURE + tail) for tail in (_NOTE_STACK, _NOTE_STACK_ID)
)


_FOREIGN_RE, _FOREIGN_ID_RE = (
    re.compile(_FOREIGN + tail) for tail in (_NOTE_STACK, _NOTE_STACK_ID)
)


def python_frame_lines(prof: HeapProfile, text: bytes, start: int) -> tuple[int, int]:
    """Read the `# python_frame:` lines from `start` on into prof.python_frames, as
    header_line would, while they are as our sampler writes them (a Python program has
    10^5 of them); where the first line not read starts, and how many were read. A line
    of another form (an escape, spaces at its end, damage) is left to header_line."""
    frames, read = prof.python_frames, 0
    texts: dict[bytes, str] = {}  # names and files, each decoded once
    while (m := _CANONICAL_FRAME_RE.match(text, start)) is not None:
        hex_address, line, first_line, raw_name, raw_file = m.groups()
        address = int(hex_address, 16)
        name = texts.get(raw_name) or texts.setdefault(raw_name, decode(raw_name))
        file = texts.get(raw_file) or texts.setdefault(raw_file, decode(raw_file))
        if not FRAME_BASE <= address < FRAME_END or file[-1:].isspace():
            break
        frames[address] = PythonFrame(name, file, int(line), int(first_line))
        start, read = m.end(), read + 1
    return start, read


# noted events: their pattern with a stack of addresses (heap_v2) and with a stack id
# (a tree), and the form of their fields
_NOTES = {
    "failed_alloc": (_FAILURE_RE, _FAILURE_ID_RE, "time_ns=T bytes=N error=E"),
    "foreign": (
        _FOREIGN_RE,
        _FOREIGN_ID_RE,
        f"time_ns=T bytes=N kind={'|'.join(FOREIGN_KINDS)} address=0xA",
    ),
}


def header_line(prof: HeapProfile, line: str, noted: list[Noted] | None = None) -> None:
    """Store one `# ...` line in `prof`; ValueError says what is wrong with it. `noted`
    (a tree's lines): the noted events name their stacks by id, each listed there with
    its id for the reader to fill in."""
    body = line[1:].strip()
    if body.startswith("mem_profiler "):
        prof.version = body.split(None, 1)[1]
        return
    key, sep, value = body.partition(":")
    if not sep:
        return  # a free-form comment
    key, value = key.strip(), value.strip()
    if key in _ESCAPED:
        value = _unescape(value, key)
    if key in _PATHS and "\0" in value:
        raise ValueError(f"the path in '# {key}:' holds {NO_NUL}")
    if key in _NUMBERS:
        number = _number(value, _NUMBERS[key])
        if number is None:
            raise ValueError(
                f"'{key}' must be a number from 0 to {_NUMBERS[key]}, found {show(value)}"
            )
        if key in ("pid", "dropped_samples"):
            setattr(prof, key, number)
        else:
            prof.meta[key] = value
    elif key == "dropped":
        m = _DROPPED_RE.fullmatch(value)
        counts = [_number(v, U64_MAX) for v in m.groups()] if m else [None]
        if None in counts:
            raise ValueError(
                "expected '# dropped: stack_table=N live_table=N memory=N "
                f"bytes=N' (N below 2^64), found {show(line)}"
            )
        prof.drops = Drops(*counts)
    elif key == "heap":
        if value not in HEAPS:
            raise ValueError(f"unknown heap {show(value)}: expected one of {', '.join(HEAPS)}")
        prof.heap = value
    elif key in ("cmdline", "exe"):
        setattr(prof, key, value)
    elif key == "warning":
        prof.warnings.append(value)
    elif key in _NOTES:
        by_addresses, by_id, form = _NOTES[key]
        tail = "@ ..." if noted is None else "stack=<id>"
        m = _note(by_addresses if noted is None else by_id, value, line, f"{key}: {form} {tail}")
        times = int(m["time_ns"]), int(m["bytes"])
        if key == "failed_alloc":
            prof.failures.append(_noted_stack(Failure(*times, int(m["error"]), ()), m, noted))
        else:
            foreign = Foreign(*times, m["kind"], int(m["address"], 16), ())
            prof.foreign.append(_noted_stack(foreign, m, noted))
    elif key == "python":
        if _PYTHON_RE.fullmatch(value) is None:
            raise ValueError(
                "expected '# python: <version> 0x<start> [0x<end>]' (the addresses of"
                f" _PyEval_EvalFrameDefault), found {show(line)}"
            )
        prof.meta[key] = value
    elif key == "python_frame":
        address, frame = parse_frame_line(value)
        prof.python_frames[address] = frame
    elif key == "build_id":
        obj, _, hexid = value.rpartition(" ")
        if not obj or not re.fullmatch(r"[0-9a-fA-F]+", hexid):
            raise ValueError(f"expected '# build_id: <path> <hex>', found {show(line)}")
        prof.build_ids[obj] = hexid.lower()
    else:
        prof.meta[key] = value


def parse_frame_line(value: str) -> tuple[int, PythonFrame]:
    """The address and frame of a `# python_frame:` line's value (name and file
    escaped, a tab between them); ValueError says what is wrong."""
    m = _FRAME_RE.fullmatch(value)
    address = int(m["address"], 16) if m else 0
    if m is None or not FRAME_BASE <= address < FRAME_END:
        raise ValueError(
            "expected '# python_frame: 0x<address> <line> <first line>"
            f" <name>\\t<file>' with an address from 0x{FRAME_BASE:x}, found"
            f" {value[:60]!r}"
        )
    return address, PythonFrame(
        _unescape(m["name"], "python_frame"),
        _unescape(m["file"], "python_frame"),
        int(m["line"]),
        int(m["first_line"]),
    )


def _note(pattern: re.Pattern[str], value: str, line: str, form: str) -> re.Match[str]:
    """The fields of a noted event's line (`# failed_alloc:`, `# foreign:`), its numbers
    below 2^64; ValueError naming the `form` expected otherwise."""
    m = pattern.fullmatch(value)
    if m is None or any(
        _number(m[k].lstrip("-"), U64_MAX) is None for k in _NOTE_NUMBERS if k in pattern.groupindex
    ):
        raise ValueError(f"expected '# {form}' (T and N below 2^64), found {show(line)}")
    return m


def _noted_stack(note: _Note, m: re.Match[str], noted: list[Noted] | None) -> _Note:
    """`note` with the stack of its line: the addresses, ' 0x...' each, leaf first; or,
    in a tree, listed in `noted` with the id of its stack."""
    if noted is None:
        note.stack = tuple(int(a, 16) for a in m["stack"].split())
    else:
        noted.append((note, int(m["stack_id"])))
    return note


def _number(text: str, limit: int) -> int | None:
    """The decimal number `text` (ASCII digits only), None unless it is 0 to `limit`."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(limit)):
        return None
    number = int(text)
    return number if number <= limit else None


def _unescape(text: str, key: str) -> str:
    """Undo the sampler's escape of control characters in the text of `# key:` lines:
    \\\\, \\n, \\r, \\t, and \\xHH (two lower-case hex digits) for the other bytes
    below 0x20 and 0x7f; ValueError for any other backslash."""

    def one(m: re.Match) -> str:
        if m[1]:
            return _UNESCAPED[m[1]]
        if m[2]:
            return chr(int(m[2], 16))
        shown = ascii(m[3])[1:-1] if m[3] else " at the end of the line"
        raise ValueError(
            f"a malformed escape \\{shown} in '# {key}:' (the sampler writes"
            " only \\\\, \\n, \\r, \\t and \\xHH)"
        )

    return _ESCAPE_RE.sub(one, text) if "\\" in text else text
