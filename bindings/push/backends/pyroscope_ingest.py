"""Pyroscope's legacy POST /ingest?name=SERVICE{labels}&format=pprof: a heap a request,
the labels sanitised to what its name parser takes, the profile within the limits of
Pyroscope's push."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence

from mem_profiler.push.backends.pprof_body import pprof_body
from mem_profiler.push.backends.pyroscope import MAX_BYTES, MAX_SAMPLES
from mem_profiler.push.backends.series import carried, labelled
from mem_profiler.push.periods import HeapPeriod
from mem_profiler.push.sender import Upload
from mem_profiler.push.settings import PushSettings

_INGEST_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_./-]")


def uploads(settings: PushSettings, processes: Sequence[list[HeapPeriod]]) -> list[Upload]:
    headers = {**settings.headers, "Content-Type": "application/octet-stream"}
    what = carried(processes)
    return [
        Upload(
            ingest_url(settings.url, period, labels),
            headers,
            pprof_body(period, MAX_SAMPLES, MAX_BYTES),
            what,
        )
        for period, labels in labelled(processes, settings.labels)
    ]


def ingest_url(url: str, period: HeapPeriod, labels: dict[str, str]) -> str:
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
