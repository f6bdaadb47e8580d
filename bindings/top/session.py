"""`mem_profiler top`: a live view of a running process, refreshed every interval: the
heaps' totals, its RSS, and the stacks holding the most memory, growing or allocating the
fastest. On a terminal it is a textual screen (top/screen.py); otherwise, or with -n, it
prints each refresh as text (top/text.py)."""

from __future__ import annotations

import signal

import click

from mem_profiler.control.controller import interrupt_event
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.live_view import LiveView
from mem_profiler.top.refresh import ENDING_SIGNALS, Settings
from mem_profiler.top.stacks import LiveStacks
from mem_profiler.top.text import print_batch


def run_top(settings: Settings, batch: bool) -> None:
    """The view, closed (and the window top opened with it) however it ends."""
    if batch:
        # Ctrl-C, SIGTERM and SIGHUP only set `stop`: raised wherever the main thread
        # was, they could cut the window's opening or closing short.
        with (
            interrupt_event(signal.SIGINT, *ENDING_SIGNALS) as stop,
            LiveView(settings.pid, CaptureSettings(rate=settings.rate), settings.interval) as view,
        ):
            stacks = LiveStacks(settings.pid)
            print_batch(view, stacks, settings, stop)
    else:
        from mem_profiler.top.screen import run_screen

        with LiveView(settings.pid, CaptureSettings(rate=settings.rate), settings.interval) as view:
            stacks = LiveStacks(settings.pid)
            run_screen(view, stacks, settings)
    # The window is closed: a Ctrl-C from here on ends top as it ends any program, not as
    # a KeyboardInterrupt raised in the interpreter's teardown.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    for warning in stacks.warnings:
        click.echo(f"mem_profiler top: {warning}", err=True)
