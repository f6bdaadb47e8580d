"""The terminal screen of `mem_profiler top`, a textual app: the process and its heaps'
totals, RSS and in-use bytes over the last refreshes as sparklines, and the table of
stacks. Keys: i, a, g sort by in use, allocation rate, growth; h shows the next heap (or
all); q or Ctrl-C quits. Snapshots are taken in a thread of their own, so that keys are
answered while a large profile is read."""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Footer, Sparkline, Static

from mem_profiler.live_view import LiveView
from mem_profiler.top.refresh import (
    COLUMNS,
    ENDING_SIGNALS,
    Settings,
    View,
    refreshes,
    row_cells,
    summary_lines,
)
from mem_profiler.top.stacks import LiveStacks

HISTORY = 120  # refreshes the sparklines show
SCREEN_ROWS = 200  # stacks in the table (it scrolls)


class Refreshed(Message):
    def __init__(self, shown: View) -> None:
        super().__init__()
        self.shown = shown


class Ended(Message):
    """The thread taking snapshots stopped on an error (TopScreen.failure)."""


class TopScreen(App):
    CSS = """
    #summary { height: auto; padding: 0 1; }
    #history { height: 2; }
    .label { width: 8; padding: 0 1; }
    Sparkline { width: 1fr; margin: 0 1; }
    DataTable { height: 1fr; }
    """
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("i", "sort('inuse')", "sort by in use"),
        Binding("a", "sort('alloc')", "by allocation rate"),
        Binding("g", "sort('growth')", "by growth"),
        Binding("h", "next_heap", "next heap"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    def __init__(self, view: LiveView, stacks: LiveStacks, settings: Settings) -> None:
        super().__init__()
        self.view, self.stacks, self.settings = view, stacks, settings
        self.sort, self.heap = settings.sort, settings.heap
        self.shown: View | None = None
        self.failure: Exception | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="top-snapshots", daemon=True)
        self._rss: deque[float] = deque(maxlen=HISTORY)
        self._in_use: deque[float] = deque(maxlen=HISTORY)

    def compose(self) -> ComposeResult:
        yield Static(
            f"process {self.view.pid}: the first refresh comes in {self.settings.interval:g} s",
            id="summary",
        )
        with Horizontal(id="history"):
            yield Static("RSS", classes="label")
            yield Sparkline([], id="rss")
            yield Static("in use", classes="label")
            yield Sparkline([], id="in_use")
        yield DataTable(id="stacks", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        for ending in ENDING_SIGNALS:
            asyncio.get_running_loop().add_signal_handler(ending, self.exit)
        numbers = [Text(c, justify="right") for c in COLUMNS[:3]]
        self.query_one(DataTable).add_columns(*numbers, *COLUMNS[3:])
        self.thread.start()

    def _follow(self) -> None:
        try:
            for shown in refreshes(self.view, self.stacks, self.settings.interval, self.stop):
                self.post_message(Refreshed(shown))
        except Exception as err:  # the process ended, the window closed, a binary unreadable
            self.failure = err
            self.post_message(Ended())

    def on_refreshed(self, message: Refreshed) -> None:
        self.shown = message.shown
        self._rss.append(message.shown.snapshot.rss_bytes)
        self._in_use.append(
            sum(h.in_use for h in message.shown.refresh.heaps if self.heap in (None, h.heap))
        )
        self._draw()

    def on_ended(self, message: Ended) -> None:
        self.exit()

    def action_sort(self, key: str) -> None:
        self.sort = key
        self._draw()

    def action_next_heap(self) -> None:
        """All heaps, then each heap of the last snapshot in turn."""
        if self.shown is None:
            return
        choices = [None, *(h.heap for h in self.shown.refresh.heaps)]
        self.heap = choices[
            (choices.index(self.heap) + 1) % len(choices) if self.heap in choices else 0
        ]
        self._in_use.clear()
        self._draw()

    def _draw(self) -> None:
        if self.shown is None:
            return
        self.query_one("#summary", Static).update(
            Text("\n".join(summary_lines(self.view, self.shown, self.sort, self.heap)))
        )
        self.query_one("#rss", Sparkline).data = list(self._rss)
        self.query_one("#in_use", Sparkline).data = list(self._in_use)
        table = self.query_one(DataTable)
        table.clear()
        rows = self.shown.refresh.top(self.sort, SCREEN_ROWS, self.heap)
        for cells in row_cells(rows):
            table.add_row(*(Text(c, justify="right") for c in cells[:3]), *cells[3:])


def run_screen(view: LiveView, stacks: LiveStacks, settings: Settings) -> None:
    """Until q or Ctrl-C; the error that stopped the snapshots, if one did."""
    screen = TopScreen(view, stacks, settings)
    try:
        screen.run()
    finally:
        screen.stop.set()
        if screen.thread.is_alive():
            screen.thread.join()
    if screen.failure is not None:
        raise screen.failure
