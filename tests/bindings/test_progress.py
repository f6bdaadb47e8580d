"""Long work's progress line (mem_profiler.core.progress): on a terminal, the stage and its
seconds, written over in place and taken off before the command's own output; nothing at
all where stderr is a pipe or a file."""

from __future__ import annotations

import io

from support.processes import wait_for
from support.terminal import Terminal

from mem_profiler.core import progress


def test_a_stage_is_shown_and_taken_off_before_output(monkeypatch):
    monkeypatch.setattr(progress, "AFTER_S", 0.0)
    monkeypatch.setattr(progress, "EVERY_S", 0.01)
    terminal = Terminal()
    with progress.shown("mem_parser", terminal):
        progress.stage("reading big.heap")
        wait_for(lambda: "reading big.heap" in terminal.sent(), what="the progress line")
        assert progress._line is not None
        progress._line.started -= 100  # as if the work had taken 100 s so far
        progress.clear()
        cleared = len(terminal.sent())
        assert terminal.sent().endswith("\r\x1b[K")
        progress.stage("symbolizing big.heap")  # work after output: its clock starts again
        wait_for(lambda: "symbolizing" in terminal.sent(), what="the next stage")
    after = terminal.sent()
    assert "\rmem_parser: reading big.heap... 0 s\x1b[K" in after
    assert "reading" not in after[cleared:]  # cleared: not drawn again until a new stage
    assert "\rmem_parser: symbolizing big.heap... 0 s\x1b[K" in after[cleared:]
    assert after.endswith("\r\x1b[K")  # the line taken off at the end
    assert progress._line is None


def test_short_work_shows_nothing(monkeypatch):
    monkeypatch.setattr(progress, "AFTER_S", 3600.0)
    terminal = Terminal()
    with progress.shown("mem_parser", terminal):
        progress.stage("reading small.heap")
    assert terminal.sent() == ""


def test_nothing_where_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(progress, "AFTER_S", 0.0)
    piped = io.StringIO()
    with progress.shown("mem_parser", piped):
        assert progress._line is None  # no line, no thread drawing it
        progress.stage("reading big.heap")
        progress.clear()
    assert piped.getvalue() == ""
