"""Each backend's request for one push: the heap periods of one or more processes as the
backend's protocol wants them, with the series' labels.

- pyroscope: Connect's unary POST of push.v1.PushRequest (application/proto), one series
  per heap, `__delta__="false"` because the allocated figures are already per period.
- pyroscope-ingest: the legacy POST /ingest?name=SERVICE{labels}&format=pprof, a heap a
  request, the labels sanitised to what its name parser takes.
- parca: WriteRaw through its HTTP gateway (JSON, the profile in base64).
- otlp: OpenTelemetry's ExportProfilesServiceRequest (otlp.py)."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import os
import re
import socket
import urllib.parse
import uuid
from collections.abc import Sequence

import numpy as np

from mem_profiler.core.version import VERSION
from mem_profiler.parser.common.arrays import runs
from mem_profiler.parser.common.protobuf import message, string
from mem_profiler.parser.report.pprof import (
    SAMPLE_TYPES,
    Function,
    Location,
    LocationTable,
    PprofTables,
    Samples,
    pprof_bytes,
    sample_arrays,
    tables_of,
)
from mem_profiler.push.otlp import export_request
from mem_profiler.push.periods import HeapPeriod
from mem_profiler.push.sender import Upload
from mem_profiler.push.settings import PushSettings

_INGEST_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_./-]")
# Pyroscope refuses a profile of more samples (max_profile_stacktrace_samples) or more
# bytes once decompressed (max_profile_size_bytes): the smallest stacks are summed into
# one sample of their own to fit.
PYROSCOPE_MAX_SAMPLES = 16000
PYROSCOPE_MAX_BYTES = 4 << 20
LEFT_OUT = "[smaller stacks, summed to fit the backend's limit]"
# A push is made again every period: gzip's fastest level takes a third of the time of
# its default for a tenth more bytes.
GZIP_LEVEL = 1


def series_labels(period: HeapPeriod, user: dict[str, str]) -> dict[str, str]:
    """A heap's series: what it is, whose, from where, and the user's labels over ours;
    none empty."""
    profile = period.profile
    exe = profile.exe or ""
    labels = {
        "__name__": "memory",
        "service_name": service_name(profile.exe, profile.cmdline),
        "host": socket.gethostname(),
        "pid": "" if profile.pid is None else str(profile.pid),
        "exe": exe,
        "build_id": profile.build_ids.get(exe, ""),
        "heap": profile.heap,
        "version": VERSION,
        **user,
    }
    return {name: value for name, value in labels.items() if value}


def service_name(exe: str | None, cmdline: str | None) -> str:
    """The program's name: its executable's, or for an interpreter the script's or
    module's it runs (`python3 -m app.main` is app.main)."""
    name = os.path.basename(exe or "") or "unknown"
    args = (cmdline or "").split()[1:]
    if re.fullmatch(r"python[\d.]*|node|ruby|perl[\d.]*|java", name) and args:
        for i, arg in enumerate(args):
            if arg == "-m" and i + 1 < len(args):
                return args[i + 1]
            if not arg.startswith("-"):
                return os.path.basename(arg).removesuffix(".py")
    return name


def uploads(settings: PushSettings, processes: Sequence[list[HeapPeriod]]) -> list[Upload]:
    """The requests that push the heap periods of each process (a process's list: its
    heaps over one period)."""
    labelled = [
        (period, series_labels(period, settings.labels))
        for periods in processes
        for period in periods
    ]
    if not labelled:
        return []
    what = _what(processes)
    headers = dict(settings.headers)
    if settings.protocol == "pyroscope":
        series = b"".join(
            message(1, _pyroscope_series(period, {**labels, "__delta__": "false"}))
            for period, labels in labelled
        )
        headers["Content-Type"] = "application/proto"
        return [Upload(settings.url, headers, series, what)]
    if settings.protocol == "pyroscope-ingest":
        headers["Content-Type"] = "application/octet-stream"
        return [
            Upload(
                _ingest_url(settings.url, period, labels),
                headers,
                _pprof(period, PYROSCOPE_MAX_SAMPLES),
                what,
            )
            for period, labels in labelled
        ]
    if settings.protocol == "parca":
        headers["Content-Type"] = "application/json"
        body = {
            "series": [
                {
                    "labels": {"labels": [{"name": k, "value": v} for k, v in labels.items()]},
                    "samples": [{"rawProfile": base64.b64encode(_pprof(period)).decode()}],
                }
                for period, labels in labelled
            ]
        }
        return [Upload(settings.url, headers, json.dumps(body).encode(), what)]
    headers["Content-Type"] = "application/x-protobuf"
    by_process = [
        (series_labels(periods[0], settings.labels), [_compacted(p) for p in periods])
        for periods in processes
        if periods
    ]
    return [Upload(settings.url, headers, export_request(by_process), what)]


def _compacted(period: HeapPeriod) -> HeapPeriod:
    return dataclasses.replace(period, tables=compact(period.tables))


def _what(processes: Sequence[list[HeapPeriod]]) -> str:
    pids = sorted({p.profile.pid for periods in processes for p in periods if p.profile.pid})
    return "the profiles of process" + ("es " if len(pids) > 1 else " ") + ", ".join(map(str, pids))


def _pprof(period: HeapPeriod, max_samples: int | None = None) -> bytes:
    """The period as gzipped pprof; with `max_samples`, within Pyroscope's limits."""
    keep = max_samples
    while True:
        if keep is not None and len(period.tables.samples) > keep:
            tables = fitted(period.tables, keep)
        else:
            tables = compact(period.tables)
        body = pprof_bytes(
            period.profile, tables, period_ns=(period.start_ns, period.end_ns), level=GZIP_LEVEL
        )
        if keep is None or keep == 1 or len(gzip.decompress(body)) <= PYROSCOPE_MAX_BYTES:
            return body
        keep = min(keep, len(period.tables.samples)) // 2


def compact(tables: PprofTables) -> PprofTables:
    """The tables with only the locations, functions and mappings their samples use,
    numbered anew."""
    samples = sample_arrays(tables.samples)
    return tables_of(
        samples.ids,
        samples.bounds,
        samples.values,
        tables.locations,
        tables.functions,
        tables.mappings,
    )


def fitted(tables: PprofTables, keep: int) -> PprofTables:
    """The tables with their keep - 1 largest samples (by bytes in use, then allocated)
    and one more that sums the others, its stack one location named LEFT_OUT; only the
    locations, functions and mappings left in use are kept, numbered anew."""
    samples = sample_arrays(tables.samples)
    values = samples.values
    in_use = values[:, SAMPLE_TYPES.index(("inuse_space", "bytes"))]
    allocated = values[:, SAMPLE_TYPES.index(("alloc_space", "bytes"))]
    order = np.lexsort((np.arange(len(values)), -allocated, -in_use))
    kept = np.sort(order[: keep - 1])
    ids, bounds = runs(samples.ids, samples.bounds, kept)
    out = tables_of(ids, bounds, values[kept], tables.locations, tables.functions, tables.mappings)
    assert isinstance(out.samples, Samples)
    out.functions.append(Function(LEFT_OUT, LEFT_OUT, "", 0))
    out.locations = LocationTable.of(out.locations).plus(Location(0, 0, [(len(out.functions), 0)]))
    out.samples = Samples(
        np.r_[out.samples.ids, len(out.locations)],
        np.r_[bounds, bounds[-1] + 1],
        np.vstack([values[kept], values[order[keep - 1 :]].sum(axis=0)]),
    )
    return out


def _pyroscope_series(period: HeapPeriod, labels: dict[str, str]) -> bytes:
    """push.v1.RawProfileSeries{labels=1: types.v1.LabelPair{name=1, value=2},
    samples=2: RawSample{raw_profile=1, ID=2}}"""
    pairs = b"".join(message(1, string(1, k) + string(2, v)) for k, v in labels.items())
    sample = message(1, _pprof(period, PYROSCOPE_MAX_SAMPLES)) + string(2, str(uuid.uuid4()))
    return pairs + message(2, sample)


def _ingest_url(url: str, period: HeapPeriod, labels: dict[str, str]) -> str:
    """/ingest's query: the service name, then the labels as `{k=v,...}` (its parser takes
    [A-Za-z0-9_./-] in values; others become _), the period in seconds."""
    tags = ",".join(
        f"{k}={_INGEST_UNSAFE_RE.sub('_', v)}"
        for k, v in labels.items()
        if not k.startswith("__") and k != "service_name"
    )
    name = _INGEST_UNSAFE_RE.sub("_", labels.get("service_name", "unknown")) + "{" + tags + "}"
    query = urllib.parse.urlencode(
        {
            "name": name,
            "from": period.start_ns // 10**9,
            "until": max(period.end_ns // 10**9, period.start_ns // 10**9 + 1),
            "format": "pprof",
            "spyName": "mem_profiler",
        }
    )
    return f"{url}{'&' if urllib.parse.urlsplit(url).query else '?'}{query}"
