"""pprof's profile.proto as an input (`-f x.pb.gz`): a heap profile written by Go's
runtime/pprof, Pyroscope or `go tool pprof`, read into the leaf data model. Such a file
names its functions itself: each line of a location becomes a named frame (innermost
inlined call first, as the file orders them), so no program is needed to read it; a
location without lines stays an address of its mapping, symbolized as ours are. The
values are unsampled already (the file's rate is 1)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.profile import NAMED_BASE, NAMED_END, HeapProfile, NamedFrame
from mem_profiler.parser.read.text import NO_NUL

GZIP_MAGIC = b"\x1f\x8b"
_MAX_INFLATED = 1 << 30  # a profile this large is no heap profile of ours to read
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

# profile.proto's field numbers: those the reader keeps (it skips the others, as
# protobuf readers skip unknown fields)
_SAMPLE_TYPE, _SAMPLE, _MAPPING, _LOCATION, _FUNCTION, _STRINGS = 1, 2, 3, 4, 5, 6
_KEPT = (_SAMPLE_TYPE, _SAMPLE, _MAPPING, _LOCATION, _FUNCTION, _STRINGS)
# Bounds on what a small file can make the reader build: the frames of one sample (its
# locations times their lines; Go records 64, and even deep recursions few thousands),
# of all samples (a multiple of the profile's size, at least ten million), and the
# fields of the profile message (a field takes at least two bytes).
_MAX_SAMPLE_FRAMES = 1 << 16
_FRAMES_PER_BYTE, _MIN_FRAMES = 16, 10_000_000
_MAX_FIELDS = 1 << 23
_HEAP_TYPES = {  # (what a sample type counts, its unit) -> (in use, allocated, objects)
    ("inuse_objects", "count"): (True, False, True),
    ("inuse_space", "bytes"): (True, False, False),
    ("alloc_objects", "count"): (False, True, True),
    ("alloc_space", "bytes"): (False, True, False),
    ("objects", "count"): (True, True, True),  # one figure: a heap sample or growth stacks
    ("space", "bytes"): (True, True, False),
}


class _Malformed(Exception):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise _Malformed("a number runs past its message")
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            if value >> 64:
                raise _Malformed("a number past 64 bits")
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, i = _varint(buf, i)
        elif wire == _LEN:
            length, i = _varint(buf, i)
            if i + length > len(buf):
                raise _Malformed("a field runs past its message")
            value, i = buf[i : i + length], i + length
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if i + width > len(buf):
                raise _Malformed("a field runs past its message")
            value, i = int.from_bytes(buf[i : i + width], "little"), i + width
        else:
            raise _Malformed(f"wire type {wire} is not protobuf's")
        yield number, wire, value


def _numbers(wire: int, value: int | bytes, signed: bool = False) -> list[int]:
    """A repeated number field's values, packed or not."""
    if wire == _VARINT and isinstance(value, int):
        out = [value]
    elif wire == _LEN and isinstance(value, bytes):
        out, i = [], 0
        while i < len(value):
            number, i = _varint(value, i)
            out.append(number)
    else:
        raise _Malformed("a number field of the wrong type")
    return [v - (1 << 64) if signed and v >= 1 << 63 else v for v in out]


def _message(value: int | bytes) -> dict[int, list[tuple[int, int | bytes]]]:
    if not isinstance(value, bytes):
        raise _Malformed("a message field of the wrong type")
    fields: dict[int, list[tuple[int, int | bytes]]] = {}
    for number, wire, v in _fields(value):
        fields.setdefault(number, []).append((wire, v))
    return fields


def _one(fields: dict[int, list[tuple[int, int | bytes]]], number: int) -> int:
    wire, value = (fields.get(number) or [(_VARINT, 0)])[-1]
    if not isinstance(value, int):
        raise _Malformed("a number field of the wrong type")
    return value


def _inflate(data: bytes, name: str) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, _MAX_INFLATED)
    except zlib.error as e:
        raise HeapFileError(f"{name}: its gzip stream is damaged ({e}).") from None
    if inflater.unconsumed_tail:
        raise HeapFileError(f"{name}: it inflates past 1 GiB, which no heap profile takes.")
    if not inflater.eof:
        raise HeapFileError(f"{name}: its gzip stream ends early: the file is cut short.")
    return out


def read_pprof(data: bytes, name: str) -> HeapProfile:
    """The heap profile of a gzip-compressed profile.proto; HeapFileError, one sentence,
    for another kind of profile or a damaged one."""
    try:
        return _profile(_inflate(data, name), name)
    except _Malformed as e:
        raise HeapFileError(
            f"{name} is gzip-compressed but no pprof profile.proto that reads whole: {e}."
        ) from None


def _profile(buf: bytes, name: str) -> HeapProfile:
    top: dict[int, list[tuple[int, int | bytes]]] = {}
    for count, (number, wire, value) in enumerate(_fields(buf)):
        if count == _MAX_FIELDS:
            raise _Malformed(f"more than {_MAX_FIELDS:,} fields, more than a profile holds")
        if number in _KEPT:
            top.setdefault(number, []).append((wire, value))
    strings = [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else ""
        for _, v in top.get(_STRINGS, [])
    ]

    def text(index: int) -> str:
        if not 0 <= index < len(strings):
            raise _Malformed(f"a string index ({index}) past its table")
        return strings[index]

    kinds = []
    for _, value in top.get(_SAMPLE_TYPE, []):
        fields = _message(value)
        kinds.append((text(_one(fields, 1)), text(_one(fields, 2))))
    columns = {kind: i for i, kind in enumerate(kinds) if kind in _HEAP_TYPES}
    if not any(unit == "bytes" for _, unit in columns):
        shown = ", ".join(f"{t} ({u})" for t, u in kinds) or "no values"
        raise HeapFileError(
            f"{name} is a pprof profile of {shown}, not of a heap: mem_parser reads heap"
            " profiles (Go's heap, alloc or allocs profiles)."
        )

    functions = {}
    for _, value in top.get(_FUNCTION, []):
        f = _message(value)
        functions[_one(f, 1)] = (text(_one(f, 2)), text(_one(f, 4)))
    mappings, build_ids = [], {}
    for _, value in top.get(_MAPPING, []):
        m = _message(value)
        path = text(_one(m, 5))
        if "\0" in path:
            raise _Malformed(f"the file name of a mapping holds {NO_NUL}")
        if _one(m, 3) > _one(m, 2):
            mappings.append(MemoryMapping(_one(m, 2), _one(m, 3), "r-xp", _one(m, 4), path))
        if _one(m, 6) and path:
            build_ids[path] = text(_one(m, 6))

    named: dict[tuple[str, str, int], int] = {}
    locations: dict[int, list[int]] = {}
    for _, value in top.get(_LOCATION, []):
        loc = _message(value)
        frames = []
        for _, line_value in loc.get(4, []):
            line = _message(line_value)
            function = functions.get(_one(line, 1))
            if function is None:
                raise _Malformed("a line names a function the file does not hold")
            key = (*function, _one(line, 2))
            frames.append(NAMED_BASE + named.setdefault(key, len(named)))
        locations[_one(loc, 1)] = frames or [_one(loc, 3)]
    if len(named) >= NAMED_END - NAMED_BASE:
        raise _Malformed("more functions and lines than a profile holds")

    addrs: list[int] = []
    lengths, values = [], []
    most = max(_MIN_FRAMES, _FRAMES_PER_BYTE * len(buf))
    for _, value in top.get(_SAMPLE, []):
        sample = _message(value)
        stack = []
        for wire, ids in sample.get(1, []):
            for location in _numbers(wire, ids):
                if location not in locations:
                    raise _Malformed("a sample names a location the file does not hold")
                stack += locations[location]
                if len(stack) > _MAX_SAMPLE_FRAMES:
                    raise _Malformed(
                        f"a sample of more than {_MAX_SAMPLE_FRAMES:,} frames (its locations"
                        " times their lines), more than any stack holds"
                    )
        if len(addrs) + len(stack) > most:
            raise _Malformed(
                f"its samples come to more than {most:,} frames, {_FRAMES_PER_BYTE} per byte"
                " of the profile: more than a profile of this size holds"
            )
        counts = [n for wire, v in sample.get(2, []) for n in _numbers(wire, v, signed=True)]
        if len(counts) != len(kinds):
            raise _Malformed("a sample's values do not match the sample types")
        addrs += stack
        lengths.append(len(stack))
        values.append(counts)
    table = np.array(values, np.int64).reshape(len(values), len(kinds))

    def column(in_use: bool, objects: bool) -> np.ndarray:
        for kind, i in columns.items():
            use, alloc, objs = _HEAP_TYPES[kind]
            if objs == objects and (use if in_use else alloc):
                return np.maximum(table[:, i], 0)
        return np.zeros(len(values), np.int64)

    profile = HeapProfile(path=name, rate=1, exe=next((m.path for m in mappings), None))
    profile.build_ids = build_ids
    profile.mappings = mappings
    profile.named_frames = {
        NAMED_BASE + i: NamedFrame(function, file, line)
        for (function, file, line), i in named.items()
    }
    profile.addrs = np.array(addrs, np.uint64)
    profile.offsets = np.r_[0, np.cumsum(lengths, dtype=np.int64)]
    profile.cur_objs, profile.cur_bytes = column(True, True), column(True, False)
    profile.acc_objs, profile.acc_bytes = column(False, True), column(False, False)
    return profile


def is_named_frame(addrs: np.ndarray) -> np.ndarray:
    """Which addresses are frames a profile names itself."""
    return (addrs >= np.uint64(NAMED_BASE)) & (addrs < np.uint64(NAMED_END))


def names_every_frame(profile: HeapProfile) -> bool:
    """Whether every frame of `profile` is one it names itself: no program is needed."""
    return bool(profile.named_frames) and bool(is_named_frame(profile.addrs).all())
