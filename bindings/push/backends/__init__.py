"""The backends a push goes to, one entry each in BACKENDS: the protocol's name
(--push-protocol), the path appended to a URL that gives none, the port that tells the
backend where the path does not, and the module whose `uploads` makes its requests,
imported when a push first goes to it. A new backend is a module with
`uploads(settings, processes) -> list[Upload]` and an entry here; the settings and the
command line's help are made from the table."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mem_profiler.push.periods import HeapPeriod
    from mem_profiler.push.sender import Upload
    from mem_profiler.push.settings import PushSettings


@dataclass(frozen=True)
class Backend:
    protocol: str  # as --push-protocol names it
    title: str  # the server's name, in the help
    path: str  # appended to a URL that gives none; a URL's path ending so is this backend's
    port: int | None  # a URL on this port, its path saying nothing, is this backend's
    module: str  # the module whose uploads(settings, processes) makes the requests


_HERE = "mem_profiler.push.backends."
BACKENDS: tuple[Backend, ...] = (
    Backend("pyroscope", "Pyroscope", "/push.v1.PusherService/Push", 4040, _HERE + "pyroscope"),
    Backend("pyroscope-ingest", "Pyroscope", "/ingest", None, _HERE + "pyroscope_ingest"),
    Backend("parca", "Parca", "/api/profiles/writeraw", 7070, _HERE + "parca"),
    Backend("otlp", "OpenTelemetry (OTLP)", "/v1development/profiles", 4318, _HERE + "otlp"),
)


def backend_named(protocol: str) -> Backend:
    for backend in BACKENDS:
        if backend.protocol == protocol:
            return backend
    raise ValueError(f"no backend speaks {protocol!r}")


def uploads(settings: PushSettings, processes: Sequence[list[HeapPeriod]]) -> list[Upload]:
    """The requests that push the heap periods of each process (a process's list: its
    heaps over one period) to the settings' backend."""
    if not any(processes):
        return []
    module = importlib.import_module(backend_named(settings.protocol).module)
    return module.uploads(settings, processes)
