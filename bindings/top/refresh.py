"""What one refresh of `mem_profiler top` shows, and the stream of them: the header
lines and the table's cells, shared by the screen (top/screen.py) and the text
(top/text.py)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from mem_profiler.control.controller import printable
from mem_profiler.core.units import format_bytes
from mem_profiler.live_view import LiveView, Snapshot
from mem_profiler.top.stacks import LiveStacks, Refresh, StackRow, distinct_frames

SORT_TITLES = {"inuse": "in use", "alloc": "allocation rate", "growth": "growth"}
COLUMNS = ("IN USE", "GROWTH/S", "ALLOC/S", "HEAP", "STACK")
# End top as q does, closing the window it opened: its terminal closed, or `kill PID`.
ENDING_SIGNALS = (signal.SIGHUP, signal.SIGTERM)


@dataclass
class Settings:
    pid: int
    rate: int  # of the window top opens
    interval: float  # seconds between refreshes
    count: int | None  # refreshes before top ends (None: until q or Ctrl-C)
    heap: str | None  # None: every heap
    sort: str  # a key of SORT_TITLES


@dataclass
class View:
    """What one refresh shows."""

    refresh: Refresh
    snapshot: Snapshot
    number: int  # 1 for the first refresh


def refreshes(
    view: LiveView, stacks: LiveStacks, interval: float, stop: threading.Event
) -> Iterator[View]:
    """A View every `interval` seconds (a refresh that took longer delays the next), each
    against the snapshot before; the first snapshot, taken at once, is their baseline.
    Ends when `stop` is set."""
    first = view.snapshot()
    stacks.update(first.window, first.time_ns)
    due = time.monotonic() + interval
    number = 0
    while not stop.wait(max(due - time.monotonic(), 0)):
        snapshot = view.snapshot()
        refresh = stacks.update(snapshot.window, snapshot.time_ns)
        due = max(due + interval, time.monotonic())
        if refresh is not None:
            number += 1
            yield View(refresh, snapshot, number)


def summary_lines(view: LiveView, shown: View, sort: str, heap: str | None) -> list[str]:
    """The header of a refresh: the process and its window, RSS, the totals of `heap` (of
    each heap if None)."""
    prof = shown.snapshot.window.head
    seconds = (shown.refresh.time_ns - view.window_start_ns) / 1e9
    owner = "top's window" if view.owns_window else "a window open already (read only)"
    lines = [
        f"process {view.pid} {printable(prof.cmdline or prof.exe or '')}".rstrip(),
        f"{owner}, -c {prof.rate}, open {seconds:.1f} s; refresh "
        f"{shown.number} over {shown.refresh.interval_s:.2f} s; "
        f"{'every heap' if heap is None else f'the {heap} heap'}, sorted by "
        f"{SORT_TITLES[sort]}",
        f"RSS {format_bytes(shown.snapshot.rss_bytes)}",
    ]
    for h in shown.refresh.heaps:
        if heap in (None, h.heap):
            lines.append(
                f"heap {h.heap}: {format_bytes(h.in_use)} in use, growing "
                f"{format_bytes(h.growth, signed=True)}/s, allocating "
                f"{format_bytes(h.alloc_rate)}/s"
            )
    if shown.refresh.dropped_samples:
        lines.append(
            f"{shown.refresh.dropped_samples:,} samples dropped (a table of the "
            "sampler was full): the figures are low"
        )
    return lines


def row_cells(rows: list[StackRow]) -> list[tuple[str, str, str, str, str]]:
    """Each row's cells, in COLUMNS' order; stacks with enough callers to tell them
    apart, `<` before each caller."""
    return [
        (
            format_bytes(r.in_use),
            format_bytes(r.growth, signed=True) + "/s",
            format_bytes(r.alloc_rate) + "/s",
            r.heap,
            " < ".join(frames),
        )
        for r, frames in zip(rows, distinct_frames(rows), strict=True)
    ]
