"""The profile as gzipped profile.proto, the format Go's `pprof` reads natively, by way of
its tables (PprofTables), which the OTLP profiles of a push are made of too.

Field numbers from github.com/google/pprof proto/profile.proto."""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, overload

import numpy as np

from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.arrays import clip_int64
from mem_profiler.parser.common.protobuf import int_field, message, varint, varints
from mem_profiler.parser.symbols.code_mappings import code_mappings, mapping_index
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile

# Go's heap profiles list their sample types in this order; inuse_space, the last, is
# pprof's default.
SAMPLE_TYPES = (
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
)


@dataclass
class Location:
    mapping: int  # id, 0 for none
    address: int
    lines: list[tuple[int, int]]  # (function id, line), innermost first


@dataclass
class Function:
    name: str
    system_name: str
    file: str
    start_line: int


class Samples(Sequence[tuple[list[int], list[int]]]):
    """Samples as arrays: sample i's location ids (leaf first) are ids[bounds[i]:
    bounds[i + 1]] and its values (SAMPLE_TYPES') values[i]; read one by one as lists."""

    def __init__(self, ids: np.ndarray, bounds: np.ndarray, values: np.ndarray) -> None:
        self.ids, self.bounds, self.values = ids, bounds, values

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, i: int) -> tuple[list[int], list[int]]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[list[int], list[int]]]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        return self.ids[self.bounds[i] : self.bounds[i + 1]].tolist(), self.values[i].tolist()


@dataclass
class PprofTables:
    """A profile as profile.proto's tables; ids are 1 + the index in their list."""

    # location ids, leaf first; SAMPLE_TYPES' values
    samples: Sequence[tuple[list[int], list[int]]]
    mappings: list[tuple[MemoryMapping, str]]  # with its build-id ('' where unknown)
    locations: list[Location]
    functions: list[Function]


def pprof_tables(sym: SymbolizedProfile, full_names: bool = False) -> PprofTables:
    """The tables of `sym`: the four heap sample types with unsampled values rounded to
    integers, one location per address (innermost first in each sample) with its
    function and file:line, and the mappings holding them with their build-ids. A
    function's name is its short name unless full_names, its system name the mangled one
    (pprof shortens a name again when both are the same). A Python frame's function is
    its qualified name, file and first line; its line the one it was running."""
    prof = sym.profile
    assert sym.system_names is not None  # SymbolizedProfile.__post_init__ fills it in
    maps = code_mappings(prof)
    map_of = mapping_index(maps, sym.addrs)
    used = sorted(
        set(map_of[map_of >= 0].tolist()),
        key=lambda m: (
            os.path.realpath(maps[m].path) != os.path.realpath(prof.exe or ""),
            maps[m].start,
        ),
    )
    map_id = {m: i + 1 for i, m in enumerate(used)}
    build_ids = _build_ids(prof)
    samples, groups = _samples(sym)
    display = sym.display_names(full_names)
    functions: dict[tuple[str, str, str, int], int] = {}
    func_of = sym.func_of.tolist()
    locations = []
    for group in groups:
        lines = []
        for loc in group:  # innermost first, as profile.proto's Location.line
            # a Python frame's address is its record's
            python = prof.python_frames.get(int(sym.addrs[loc]))
            if python is not None:  # its function's own name, file and first line
                key = (python.name, python.name, python.file, python.first_line)
                line = python.line
            else:
                filename, line = sym.where[loc] or ("", 0)
                key = (display[func_of[loc]], sym.system_names[func_of[loc]], filename, 0)
            lines.append((functions.setdefault(key, len(functions) + 1), line))
        mapping = map_id.get(int(map_of[group[0]]), 0)
        locations.append(Location(mapping, int(sym.addrs[group[0]]), lines))
    return PprofTables(
        samples,
        [(maps[m], _build_id(build_ids, maps[m].path)) for m in used],
        locations,
        [Function(*key) for key in functions],
    )


def format_pprof(
    sym: SymbolizedProfile,
    notes: Sequence[str] = (),
    full_names: bool = False,
    period_ns: tuple[int, int] | None = None,
    tables: PprofTables | None = None,
) -> bytes:
    """gzip(profile.proto) of `sym` (its `tables` where made already: pprof_tables), with
    period space/bytes = the sampling rate. `notes` become comments. The profile's time
    and duration are the window's, or `period_ns` (start, end) where given."""
    prof = sym.profile
    tables = pprof_tables(sym, full_names) if tables is None else tables
    strings = StringTable()
    out = [message(1, int_field(1, strings[t]) + int_field(2, strings[u])) for t, u in SAMPLE_TYPES]
    out.append(_sample_messages(tables.samples))
    out += [
        message(
            3,
            int_field(1, mid)
            + int_field(2, m.start)
            + int_field(3, m.end)
            + int_field(4, m.offset)
            + int_field(5, strings[m.path])
            + int_field(6, strings[build_id])
            + int_field(7, 1)
            + int_field(8, 1)
            + int_field(9, 1),
        )
        for mid, (m, build_id) in enumerate(tables.mappings, 1)
    ]
    out += [
        message(
            4,
            int_field(1, lid)
            + int_field(2, loc.mapping)
            + int_field(3, loc.address)
            + b"".join(message(4, int_field(1, f) + int_field(2, line)) for f, line in loc.lines),
        )
        for lid, loc in enumerate(tables.locations, 1)
    ]
    out += [
        message(
            5,
            int_field(1, fid)
            + int_field(2, strings[f.name])
            + int_field(3, strings[f.system_name])
            + int_field(4, strings[f.file])
            + int_field(5, f.start_line),
        )
        for fid, f in enumerate(tables.functions, 1)
    ]

    start, end = (t or 0 for t in (period_ns or prof.window_ns))
    comments = [
        f"mem_profiler {prof.version}".rstrip(),
        *(
            f"{key}: {value}"
            for key, value in (("pid", prof.pid), ("cmdline", prof.cmdline), ("heap", prof.heap))
            if value is not None
        ),
        *notes,
    ]
    tail = (
        int_field(9, start)
        + int_field(10, max(end - start, 0))
        + message(11, int_field(1, strings["space"]) + int_field(2, strings["bytes"]))
        + int_field(12, prof.rate)
        + message(13, b"".join(varint(strings[c]) for c in comments))
        + int_field(14, strings["inuse_space"])
    )
    # the string table is complete only now; its place among the fields does not matter
    out += [message(6, s.encode("utf-8", "surrogateescape")) for s in strings.table]
    return gzip.compress(b"".join(out) + tail, compresslevel=6)


class StringTable:
    """A string table: index of a string, added on first use; entry 0 is ''."""

    def __init__(self) -> None:
        self.table: list[str] = [""]
        self._ids = {"": 0}

    def __getitem__(self, text: str) -> int:
        if text not in self._ids:
            self._ids[text] = len(self.table)
            self.table.append(text)
        return self._ids[text]


def _samples(sym: SymbolizedProfile) -> tuple[Samples, list[tuple[int, ...]]]:
    """One sample per stack with a frame and a non-zero value: its location ids and
    values; and pprof's locations, each the run of our locations at one address of a
    stack (inlined calls, then the function they are in), by id - 1, numbered in the
    order the samples first meet them."""
    columns = [sym.value(index) for index, _ in SAMPLE_TYPES]
    values = clip_int64(np.rint(np.column_stack(columns))).reshape(-1, len(SAMPLE_TYPES))
    lengths = np.diff(sym.offsets)
    taken = (lengths > 0) & values.any(axis=1)
    kept = np.flatnonzero(taken)
    if not len(kept):
        return Samples(np.zeros(0, np.int64), np.zeros(1, np.int64), values[kept]), []
    counts = lengths[kept].astype(np.int64)
    # the frames of the samples, one after the other (a Python program's are 10^7)
    frames = sym.frames if taken.all() else sym.frames[np.repeat(taken, lengths)]
    # a frame ends its pprof location unless it is an inlined call; a stack's last does
    assert sym.inlined is not None  # SymbolizedProfile.__post_init__ fills it in
    ends = ~sym.inlined[frames]
    ends[np.cumsum(counts) - 1] = True
    base, by_number = len(sym.addrs), []
    if ends.all():  # a location per frame, known by it
        keys, per_sample = frames, counts
    else:  # a location of several frames is known by a number past them all
        keys = frames[ends].astype(np.int64)
        # the few inlined calls, found without an index of every location's end: the
        # one at frame p is in location p - (inlined calls before it)
        inlined = np.flatnonzero(~ends)
        location = inlined - np.arange(len(inlined))
        firsts = np.flatnonzero(np.r_[True, location[1:] != location[:-1]])
        lasts = np.r_[firsts[1:], len(inlined)] - 1
        runs: dict[tuple[int, ...], int] = {}
        spans = (location[firsts], inlined[firsts], inlined[lasts])
        for g, a, b in zip(*(span.tolist() for span in spans), strict=True):
            run = tuple(frames[a : b + 2].tolist())  # the calls and the frame they are in
            keys[g] = base + runs.setdefault(run, len(runs))
        by_number = list(runs)
        per_sample = np.add.reduceat(ends, np.cumsum(counts) - counts, dtype=np.int64)
    ids, met = _numbered_as_met(keys, base + len(by_number))
    locations = [(key,) if key < base else by_number[key - base] for key in met.tolist()]
    bounds = np.concatenate(([0], np.cumsum(per_sample)))
    return Samples(ids, bounds, values[kept]), locations


_KEYS_AT_ONCE = 1 << 20  # _numbered_as_met's keys taken at once: an 8 MB index


def _numbered_as_met(keys: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each of `keys` (in range(count)) numbered from 1 in the order they are first met,
    and the keys met, in that order: without sorting the 10^7 keys."""
    met_at = np.full(count, len(keys), np.int64)
    for a in range(0, len(keys), _KEYS_AT_ONCE):
        part = keys[a : a + _KEYS_AT_ONCE]
        np.minimum.at(met_at, part, np.arange(a, a + len(part)))
    met = np.flatnonzero(met_at < len(keys))
    met = met[np.argsort(met_at[met], kind="stable")]
    number = np.zeros(count, np.int32 if len(met) < 2**31 else np.int64)
    number[met] = np.arange(1, len(met) + 1)
    return number[keys], met


# Samples encoded at once, this many at a time (what that takes: some 40 bytes a frame).
_SAMPLES_AT_ONCE = 100_000


def _sample_arrays(samples: Sequence[tuple[list[int], list[int]]]) -> Samples:
    """`samples` as arrays (those the push fits to a backend's limit are lists)."""
    if isinstance(samples, Samples):
        return samples
    counts = np.fromiter((len(ids) for ids, _ in samples), np.int64, len(samples))
    ids = np.fromiter(chain.from_iterable(ids for ids, _ in samples), np.int64, int(counts.sum()))
    values = np.array([vs for _, vs in samples], np.int64).reshape(len(samples), len(SAMPLE_TYPES))
    return Samples(ids, np.concatenate(([0], np.cumsum(counts))), values)


def _sample_messages(samples: Sequence[tuple[list[int], list[int]]]) -> bytes:
    """profile.proto's field 2, a Sample (location ids and values, each packed) for each
    of `samples`.  Each is a run of varints, made at once for many: its tag and length,
    then field 1's tag, length and ids, then field 2's tag, length and values."""
    arrays, out = _sample_arrays(samples), []
    for at in range(0, len(arrays), _SAMPLES_AT_ONCE):
        span = arrays.bounds[at : at + _SAMPLES_AT_ONCE + 1]
        ids = arrays.ids[span[0] : span[-1]]
        values = arrays.values[at : at + _SAMPLES_AT_ONCE]
        counts = np.diff(span)
        of_sample = np.repeat(np.arange(len(values)), counts)
        ids_len = np.bincount(of_sample, varints(ids)[1], len(values)).astype(np.int64)
        values_len = varints(values.reshape(-1))[1].reshape(values.shape).sum(axis=1)
        inner = 2 + varints(ids_len)[1] + ids_len + varints(values_len)[1] + values_len
        width = 6 + counts + values.shape[1]
        starts = np.cumsum(width) - width
        tokens = np.empty(int(width.sum()), np.int64)
        tokens[starts], tokens[starts + 1] = 2 << 3 | 2, inner
        tokens[starts + 2], tokens[starts + 3] = 1 << 3 | 2, ids_len
        id_firsts = np.cumsum(counts) - counts
        tokens[np.repeat(starts + 4 - id_firsts, counts) + np.arange(len(ids))] = ids
        after = starts + 4 + counts
        tokens[after], tokens[after + 1] = 2 << 3 | 2, values_len
        for c in range(values.shape[1]):
            tokens[after + 2 + c] = values[:, c]
        out.append(varints(tokens)[0].tobytes())
    return b"".join(out)


def _build_id(build_ids: dict[str, str], path: str) -> str:
    return build_ids.get(path) or build_ids.get(os.path.realpath(path), "")


def _build_ids(prof: HeapProfile) -> dict[str, str]:
    """Build-ids by recorded path and by real path (the maps may name /usr/lib/x/libc.so.6
    where the sampler recorded /lib/x/libc.so.6)."""
    out = dict(prof.build_ids)
    for path, build_id in prof.build_ids.items():
        out.setdefault(os.path.realpath(path), build_id)
    return out
