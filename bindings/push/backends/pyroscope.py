"""Pyroscope's push API: Connect's unary POST of push.v1.PushRequest
(application/proto), one series per heap, `__delta__="false"` because the allocated
figures are already per period."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from mem_profiler.parser.common.protobuf import message, string
from mem_profiler.push.backends.pprof_body import pprof_body
from mem_profiler.push.backends.series import carried, labelled
from mem_profiler.push.periods import HeapPeriod
from mem_profiler.push.sender import Upload
from mem_profiler.push.settings import PushSettings

# Pyroscope refuses a profile of more samples (max_profile_stacktrace_samples) or more
# bytes once decompressed (max_profile_size_bytes): the smallest stacks are summed into
# one sample of their own to fit.
MAX_SAMPLES = 16000
MAX_BYTES = 4 << 20


def uploads(settings: PushSettings, processes: Sequence[list[HeapPeriod]]) -> list[Upload]:
    series = b"".join(
        message(1, _series(period, {**labels, "__delta__": "false"}))
        for period, labels in labelled(processes, settings.labels)
    )
    headers = {**settings.headers, "Content-Type": "application/proto"}
    return [Upload(settings.url, headers, series, carried(processes))]


def _series(period: HeapPeriod, labels: dict[str, str]) -> bytes:
    """push.v1.RawProfileSeries{labels=1: types.v1.LabelPair{name=1, value=2},
    samples=2: RawSample{raw_profile=1, ID=2}}"""
    pairs = b"".join(message(1, string(1, k) + string(2, v)) for k, v in labels.items())
    sample = message(1, pprof_body(period, MAX_SAMPLES, MAX_BYTES)) + string(2, str(uuid.uuid4()))
    return pairs + message(2, sample)
