"""`mem_profiler top` as text, without a terminal or with -n: each refresh printed as
`top -b` does."""

from __future__ import annotations

import threading

import click

from mem_profiler.live_view import LiveView
from mem_profiler.top.refresh import COLUMNS, Settings, refreshes, row_cells, summary_lines
from mem_profiler.top.stacks import LiveStacks

BATCH_ROWS = 20  # stacks printed per refresh


def print_batch(
    view: LiveView, stacks: LiveStacks, settings: Settings, stop: threading.Event
) -> None:
    """settings.count refreshes as text (all of them until `stop` is set if None)."""
    for shown in refreshes(view, stacks, settings.interval, stop):
        rows = shown.refresh.top(settings.sort, BATCH_ROWS, settings.heap)
        cells = [COLUMNS, *row_cells(rows)]
        widths = [max(len(c[i]) for c in cells) for i in range(4)]
        table = [
            "  ".join(
                [*(c[i].rjust(widths[i]) for i in range(3)), c[3].ljust(widths[3]), c[4]]
            ).rstrip()
            for c in cells
        ]
        header = summary_lines(view, shown, settings.sort, settings.heap)
        click.echo("\n".join(header + table) + "\n")
        if shown.number == settings.count:
            return
