"""Parca's WriteRaw through its HTTP gateway: JSON, each heap's series with its profile
in base64."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

from mem_profiler.push.backends.pprof_body import pprof_body
from mem_profiler.push.backends.series import carried, labelled
from mem_profiler.push.periods import HeapPeriod
from mem_profiler.push.sender import Upload
from mem_profiler.push.settings import PushSettings


def uploads(settings: PushSettings, processes: Sequence[list[HeapPeriod]]) -> list[Upload]:
    headers = {**settings.headers, "Content-Type": "application/json"}
    body = {
        "series": [
            {
                "labels": {"labels": [{"name": k, "value": v} for k, v in labels.items()]},
                "samples": [{"rawProfile": base64.b64encode(pprof_body(period)).decode()}],
            }
            for period, labels in labelled(processes, settings.labels)
        ]
    }
    return [Upload(settings.url, headers, json.dumps(body).encode(), carried(processes))]
