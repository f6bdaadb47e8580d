"""The profile as gzipped profile.proto, the format Go's `pprof` reads natively, by way of
its tables (PprofTables), which the OTLP profiles of a push are made of too.

Field numbers from github.com/google/pprof proto/profile.proto."""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.arrays import clip_int64, runs
from mem_profiler.parser.common.protobuf import int_field, message, varint, varints
from mem_profiler.parser.symbols.code_mappings import code_mappings, mapping_index
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile

if TYPE_CHECKING:
    from mem_profiler.parser.report.formats import Rendering


_MAPPING_FIELDS = ("start", "end", "offset")  # profile.proto's Mapping fields 2-4
_NAMES = ("name", "system_name", "file")  # its Function fields 2-4, string ids

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


class LocationTable(Sequence[Location]):
    """Locations as arrays: location i's mapping id and address, and its lines, function
    ids and line numbers [bounds[i]:bounds[i + 1]] of `function` and `line`; read one by
    one as Location. What the push keeps of a window's locations and encodes at once."""

    def __init__(
        self,
        mapping: np.ndarray,
        address: np.ndarray,
        bounds: np.ndarray,
        function: np.ndarray,
        line: np.ndarray,
    ) -> None:
        self.mapping, self.address, self.bounds = mapping, address, bounds
        self.function, self.line = function, line

    @classmethod
    def of(cls, locations: Sequence[Location]) -> LocationTable:
        if isinstance(locations, LocationTable):
            return locations
        counts = [len(loc.lines) for loc in locations]
        lines = [pair for loc in locations for pair in loc.lines]
        return cls(
            np.array([loc.mapping for loc in locations], np.int64),
            np.array([loc.address for loc in locations], np.uint64),
            np.r_[0, np.cumsum(counts, dtype=np.int64)],
            np.array([f for f, _ in lines], np.int64),
            np.array([n for _, n in lines], np.int64),
        )

    def __len__(self) -> int:
        return len(self.mapping)

    @overload
    def __getitem__(self, i: int) -> Location: ...
    @overload
    def __getitem__(self, i: slice) -> list[Location]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        a, b = int(self.bounds[i]), int(self.bounds[i + 1])
        lines = list(zip(self.function[a:b].tolist(), self.line[a:b].tolist(), strict=True))
        return Location(int(self.mapping[i]), int(self.address[i]), lines)

    def taken(self, which: np.ndarray) -> LocationTable:
        """The locations `which` (indices), in that order."""
        function, bounds = runs(self.function, self.bounds, which)
        line, _ = runs(self.line, self.bounds, which)
        return LocationTable(self.mapping[which], self.address[which], bounds, function, line)

    def plus(self, loc: Location) -> LocationTable:
        """These and `loc` after them."""
        more = LocationTable.of([loc])
        return LocationTable(
            np.r_[self.mapping, more.mapping],
            np.r_[self.address, more.address],
            np.r_[self.bounds, self.bounds[-1] + more.bounds[1:]],
            np.r_[self.function, more.function],
            np.r_[self.line, more.line],
        )


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
    locations: Sequence[Location]  # a LocationTable where made at once
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


def tables_of(
    ids: np.ndarray,
    bounds: np.ndarray,
    values: np.ndarray,
    locations: Sequence[Location],
    functions: Sequence[Function],
    mappings: Sequence[tuple[MemoryMapping, str]],
) -> PprofTables:
    """The tables of samples whose location ids (from 1, into `locations`, theirs into
    `functions` and `mappings`) are ids[bounds[i]:bounds[i + 1]], and whose values are
    values[i]: only the locations, functions and mappings they use, numbered anew from 1
    in the order of their ids."""
    table = LocationTable.of(locations)
    used, dense = _numbered(ids, len(table))
    locs = table.taken(used - 1)
    used_mappings, locs.mapping = _numbered(locs.mapping, len(mappings))
    used_functions, locs.function = _numbered(locs.function, len(functions))
    return PprofTables(
        Samples(dense, bounds, values),
        [mappings[m - 1] for m in used_mappings.tolist()],
        locs,
        [functions[f - 1] for f in used_functions.tolist()],
    )


def _numbered(ids: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ids (from 1 to `count`; 0: none, kept) used, in order, and each of `ids`
    numbered anew from 1 in that order: a look-up, not a sort of the 10^6 ids."""
    present = np.zeros(count + 1, bool)
    present[ids] = True
    present[0] = False
    used = np.flatnonzero(present)
    number = np.zeros(count + 1, np.int64)
    number[used] = np.arange(1, len(used) + 1)
    return used, number[ids]


def format_pprof(
    sym: SymbolizedProfile, notes: Sequence[str] = (), full_names: bool = False
) -> bytes:
    """gzip(profile.proto) of `sym`, with period space/bytes = the sampling rate. `notes`
    become comments. The profile's time and duration are the window's."""
    return pprof_bytes(sym.profile, pprof_tables(sym, full_names), notes)


def pprof_bytes(
    prof: HeapProfile,
    tables: PprofTables,
    notes: Sequence[str] = (),
    period_ns: tuple[int, int] | None = None,
    level: int = 6,
) -> bytes:
    """gzip(profile.proto) of `tables`, a profile of `prof` (who ran, its rate), gzipped
    at `level`. The profile's time and duration are the window's, or `period_ns` (start,
    end) where given."""
    strings = StringTable()
    out = [message(1, int_field(1, strings[t]) + int_field(2, strings[u])) for t, u in SAMPLE_TYPES]
    out.append(_sample_messages(tables.samples))
    mappings = tables.mappings
    out.append(
        _varint_messages(
            3,
            np.arange(1, len(mappings) + 1),
            *(np.array([getattr(m, k) for m, _ in mappings], np.uint64) for k in _MAPPING_FIELDS),
            np.array([strings[m.path] for m, _ in mappings], np.int64),
            np.array([strings[build_id] for _, build_id in mappings], np.int64),
            *(np.ones(len(mappings), np.int64),) * 3,  # has functions, file names, lines
        )
    )
    out.append(_location_messages(LocationTable.of(tables.locations)))
    functions = tables.functions
    out.append(
        _varint_messages(
            5,
            np.arange(1, len(functions) + 1),
            *(np.array([strings[getattr(f, k)] for f in functions], np.int64) for k in _NAMES),
            np.array([f.start_line for f in functions], np.int64),
        )
    )

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
    return gzip.compress(b"".join(out) + tail, compresslevel=level)


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


def sample_arrays(samples: Sequence[tuple[list[int], list[int]]]) -> Samples:
    """`samples` as arrays (those the push fits to a backend's limit are lists)."""
    if isinstance(samples, Samples):
        return samples
    counts = np.fromiter((len(ids) for ids, _ in samples), np.int64, len(samples))
    ids = np.fromiter(chain.from_iterable(ids for ids, _ in samples), np.int64, int(counts.sum()))
    values = np.array([vs for _, vs in samples], np.int64).reshape(len(samples), len(SAMPLE_TYPES))
    return Samples(ids, np.concatenate(([0], np.cumsum(counts))), values)


def _sample_messages(samples: Sequence[tuple[list[int], list[int]]]) -> bytes:
    """profile.proto's field 2, a Sample (location ids and values, each packed) for each
    of `samples`, made at once for many: each is its head (its tag and length, then
    field 1's tag and length), its ids, field 2's tag and length, then its values, every
    part's varints made at once for all the samples and put in place."""
    arrays, out = sample_arrays(samples), []
    for at in range(0, len(arrays), _SAMPLES_AT_ONCE):
        span = arrays.bounds[at : at + _SAMPLES_AT_ONCE + 1]
        values = arrays.values[at : at + _SAMPLES_AT_ONCE]
        n = len(values)
        ids, id_sizes = varints(arrays.ids[span[0] : span[-1]])
        ids_len = np.bincount(np.repeat(np.arange(n), np.diff(span)), id_sizes, n).astype(np.int64)
        vals, val_sizes = varints(values.reshape(-1))
        values_len = val_sizes.reshape(values.shape).sum(axis=1)
        inner = 2 + varints(ids_len)[1] + ids_len + varints(values_len)[1] + values_len
        head, head_sizes = varints(
            np.column_stack([np.full(n, 2 << 3 | 2), inner, np.full(n, 1 << 3 | 2), ids_len])
        )
        mid, mid_sizes = varints(np.column_stack([np.full(n, 2 << 3 | 2), values_len]))
        parts = [
            (head, head_sizes.reshape(n, -1).sum(axis=1)),
            (ids, ids_len),
            (mid, mid_sizes.reshape(n, -1).sum(axis=1)),
            (vals, values_len),
        ]
        sizes = sum(length for _, length in parts)
        message_at = np.cumsum(sizes) - sizes
        buf = np.empty(int(sizes.sum()), np.uint8)
        for data, length in parts:  # each sample's part, at its place in its message
            taken = np.cumsum(length) - length
            buf[np.repeat(message_at - taken, length) + np.arange(len(data))] = data
            message_at = message_at + length
        out.append(buf.tobytes())
    return b"".join(out)


def _varint_messages(field: int, *columns: np.ndarray) -> bytes:
    """A message of field `field` per row of the `columns`, column k its varint field
    k + 1, zeros left out as int_field leaves them; all made at once."""
    values = np.column_stack([np.asarray(c).view(np.int64) for c in columns]).reshape(
        -1, len(columns)
    )
    present = values != 0
    sizes = varints(values.reshape(-1))[1].reshape(values.shape)
    body = (present * (1 + sizes)).sum(axis=1)
    width = 2 + 2 * present.sum(axis=1)
    starts = np.cumsum(width) - width
    tokens = np.empty(int(width.sum()), np.int64)
    tokens[starts], tokens[starts + 1] = field << 3 | 2, body
    at = starts + 2
    for k in range(values.shape[1]):
        has = present[:, k]
        tokens[at[has]], tokens[at[has] + 1] = (k + 1) << 3, values[has, k]
        at = at + 2 * has
    return varints(tokens)[0].tobytes()


def _location_messages(locs: LocationTable) -> bytes:
    """profile.proto's field 4, a Location (id, mapping, address, then a Line each of
    function id and line), for each of `locs`, ids from 1; zeros left out, as int_field
    leaves them. All made at once as _sample_messages makes samples: one run of varints,
    tags among them."""
    n = len(locs)
    ids = np.arange(1, n + 1, dtype=np.int64)
    owner = np.repeat(np.arange(n), np.diff(locs.bounds))
    has_line = locs.line != 0
    line_body = 1 + varints(locs.function)[1] + has_line * (1 + varints(locs.line)[1])
    line_bytes = 1 + varints(line_body)[1] + line_body
    has_mapping, address = locs.mapping != 0, locs.address.view(np.int64)
    has_address = address != 0
    body = (
        1
        + varints(ids)[1]
        + has_mapping * (1 + varints(locs.mapping)[1])
        + has_address * (1 + varints(address)[1])
        + np.bincount(owner, line_bytes, n).astype(np.int64)
    )
    line_tokens = 4 + 2 * has_line
    width = 4 + 2 * has_mapping + 2 * has_address + np.bincount(owner, line_tokens, n)
    width = width.astype(np.int64)
    starts = np.cumsum(width) - width
    tokens = np.empty(int(width.sum()), np.int64)
    tokens[starts], tokens[starts + 1] = 4 << 3 | 2, body
    tokens[starts + 2], tokens[starts + 3] = 1 << 3, ids
    at = starts + 4
    for has, tag, value in ((has_mapping, 2 << 3, locs.mapping), (has_address, 3 << 3, address)):
        tokens[at[has]], tokens[at[has] + 1] = tag, value[has]
        at = at + 2 * has
    before = np.cumsum(line_tokens) - line_tokens  # tokens of the lines before each line
    first = at[owner] + before - before[locs.bounds[:-1][owner]]
    tokens[first], tokens[first + 1] = 4 << 3 | 2, line_body
    tokens[first + 2], tokens[first + 3] = 1 << 3, locs.function
    tokens[first[has_line] + 4], tokens[first[has_line] + 5] = 2 << 3, locs.line[has_line]
    return varints(tokens)[0].tobytes()


def _build_id(build_ids: dict[str, str], path: str) -> str:
    return build_ids.get(path) or build_ids.get(os.path.realpath(path), "")


def _build_ids(prof: HeapProfile) -> dict[str, str]:
    """Build-ids by recorded path and by real path (the maps may name /usr/lib/x/libc.so.6
    where the sampler recorded /lib/x/libc.so.6)."""
    out = dict(prof.build_ids)
    for path, build_id in prof.build_ids.items():
        out.setdefault(os.path.realpath(path), build_id)
    return out


def render(r: Rendering) -> bytes:
    """--pprof: the profile as profile.proto, its notes as comments."""
    return format_pprof(r.named, r.notes, r.request.full_names)
