"""A push as OpenTelemetry's profiles signal: ExportProfilesServiceRequest of
opentelemetry-proto v1.10.0 (`opentelemetry.proto.collector.profiles.v1development`),
the one the Collector takes at POST /v1development/profiles. One resource per process,
one Profile per heap and sample type (the signal has one type per profile), all sharing
one dictionary whose every table begins with its empty entry, as the specification
asks."""

from __future__ import annotations

import os
from collections.abc import Sequence

from mem_profiler.core.version import VERSION
from mem_profiler.parser.common.protobuf import fixed64_field, int_field, message, packed, string
from mem_profiler.parser.report.pprof import SAMPLE_TYPES, StringTable
from mem_profiler.push.backends.pprof_body import compacted
from mem_profiler.push.backends.series import carried, series_labels
from mem_profiler.push.periods import HeapPeriod
from mem_profiler.push.sender import Upload
from mem_profiler.push.settings import PushSettings

# Our labels as OpenTelemetry's resource attributes (semantic conventions); the others
# keep their names.
RESOURCE_KEYS = {
    "service_name": "service.name",
    "host": "host.name",
    "pid": "process.pid",
    "exe": "process.executable.path",
    "build_id": "process.executable.build_id.gnu",
    "version": "telemetry.sdk.version",
}
HEAP_ATTRIBUTE = "memory.heap"


def uploads(settings: PushSettings, processes: Sequence[list[HeapPeriod]]) -> list[Upload]:
    headers = {**settings.headers, "Content-Type": "application/x-protobuf"}
    by_process = [
        (series_labels(periods[0], settings.labels), [compacted(p) for p in periods])
        for periods in processes
        if periods
    ]
    return [Upload(settings.url, headers, export_request(by_process), carried(processes))]


def export_request(processes: Sequence[tuple[dict[str, str], list[HeapPeriod]]]) -> bytes:
    """The request for each process's labels and heap periods."""
    dictionary = _Dictionary(StringTable())
    resources = b"".join(
        message(1, _resource_profiles(labels, periods, dictionary)) for labels, periods in processes
    )
    return resources + message(2, dictionary.encode())


def _resource_profiles(
    labels: dict[str, str], periods: list[HeapPeriod], dictionary: _Dictionary
) -> bytes:
    attributes = b"".join(
        message(1, _key_value(RESOURCE_KEYS.get(key, key), value))
        for key, value in labels.items()
        if key not in ("__name__", "heap")
    )
    profiles = b"".join(
        message(2, profile) for period in periods for profile in _profiles(period, dictionary)
    )
    scope = message(1, string(1, "mem_profiler") + string(2, VERSION))
    return message(1, attributes) + message(2, scope + profiles)


def _key_value(key: str, value: str) -> bytes:
    """A common.v1 KeyValue; process.pid an int, as the conventions have it."""
    if key == "process.pid" and value.isdigit():
        return string(1, key) + message(2, int_field(3, int(value)))
    return string(1, key) + message(2, string(1, value))


def _profiles(period: HeapPeriod, dictionary: _Dictionary) -> list[bytes]:
    """One Profile per sample type that has a sample (an empty one says nothing)."""
    tables = period.tables
    location_base = len(dictionary.locations) - 1  # the period's location id 1 is this + 1
    function_base = len(dictionary.functions) - 1
    mapping_base = len(dictionary.mappings) - 1
    for m, build_id in tables.mappings:
        attrs = (
            [dictionary.attribute("process.executable.build_id.gnu", build_id)] if build_id else []
        )
        dictionary.mappings.append(
            int_field(1, m.start)
            + int_field(2, m.end)
            + int_field(3, m.offset)
            + int_field(4, dictionary.strings[m.path])
            + packed(5, attrs)
        )
    for f in tables.functions:
        dictionary.functions.append(
            int_field(1, dictionary.strings[f.name])
            + int_field(2, dictionary.strings[f.system_name])
            + int_field(3, dictionary.strings[f.file])
            + int_field(4, f.start_line)
        )
    for loc in tables.locations:
        lines = b"".join(
            message(3, int_field(1, function_base + fid) + int_field(2, line))
            for fid, line in loc.lines
        )
        mapping = mapping_base + loc.mapping if loc.mapping else 0
        dictionary.locations.append(int_field(1, mapping) + int_field(2, loc.address) + lines)
    stacks = [dictionary.stack([location_base + lid for lid in ids]) for ids, _ in tables.samples]
    heap = dictionary.attribute(HEAP_ATTRIBUTE, period.profile.heap)
    out = []
    for column, (kind, unit) in enumerate(SAMPLE_TYPES):
        samples = b"".join(
            message(2, int_field(1, stack) + packed(4, [values[column]]))
            for stack, (_, values) in zip(stacks, tables.samples, strict=True)
            if values[column]
        )
        if not samples:
            continue
        out.append(
            message(1, _value_type(dictionary.strings, kind, unit))
            + samples
            + fixed64_field(3, period.start_ns)
            + int_field(4, max(period.end_ns - period.start_ns, 0))
            + message(5, _value_type(dictionary.strings, "space", "bytes"))
            + int_field(6, period.profile.rate)
            + message(7, os.urandom(16))
            + packed(11, [heap])
        )
    return out


def _value_type(strings: StringTable, kind: str, unit: str) -> bytes:
    return int_field(1, strings[kind]) + int_field(2, strings[unit])


class _Dictionary:
    """ProfilesDictionary's tables, each entry encoded, entry 0 the empty one."""

    def __init__(self, strings: StringTable) -> None:
        self.strings = strings
        self.mappings: list[bytes] = [b""]
        self.locations: list[bytes] = [b""]
        self.functions: list[bytes] = [b""]
        self.attributes: list[bytes] = [b""]
        self.stacks: list[bytes] = [b""]
        self._attribute_ids: dict[tuple[str, str], int] = {}
        self._stack_ids: dict[tuple[int, ...], int] = {}

    def attribute(self, key: str, value: str) -> int:
        if (key, value) not in self._attribute_ids:
            self._attribute_ids[key, value] = len(self.attributes)
            self.attributes.append(int_field(1, self.strings[key]) + message(2, string(1, value)))
        return self._attribute_ids[key, value]

    def stack(self, locations: list[int]) -> int:
        key = tuple(locations)
        if key not in self._stack_ids:
            self._stack_ids[key] = len(self.stacks)
            self.stacks.append(packed(1, locations))
        return self._stack_ids[key]

    def encode(self) -> bytes:
        """The dictionary message; the string table last, complete only now."""
        tables = (
            (1, self.mappings),
            (2, self.locations),
            (3, self.functions),
            (4, [b""]),  # link_table: no trace links
            (6, self.attributes),
            (7, self.stacks),
        )
        out = b"".join(message(field, entry) for field, entries in tables for entry in entries)
        return out + b"".join(
            message(5, s.encode("utf-8", "surrogateescape")) for s in self.strings.table
        )
