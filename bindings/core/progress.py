"""Long work's progress on stderr, where stderr is a terminal: once a second of it has
passed, a line saying what the work is doing and for how long, written over in place and
cleared before anything else is written to the terminal (a message, the report, a program
the gate runs); nothing where stderr is not a terminal, so that logs and pipes see only the
command's own lines.

A command opens one (`shown`); the stages it goes through name themselves (`stage`)
wherever they are, without a handle passed down to them: with none open, they cost a
global's read."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

AFTER_S = 1.0  # work shorter than this shows nothing
EVERY_S = 0.25  # how often the line is written again


class _Line:
    """The progress line of one command, redrawn by a thread of its own."""

    def __init__(self, prog: str, stream: TextIO) -> None:
        self.prog, self.stream = prog, stream
        self.started = time.monotonic()
        self.what = ""
        self.drawn = False
        self.lock = threading.Lock()
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._draw_until_ended, daemon=True)

    def _draw_until_ended(self) -> None:
        while not self.ended.wait(EVERY_S):
            with self.lock:
                spent = time.monotonic() - self.started
                if self.what and spent >= AFTER_S and not self.ended.is_set():
                    self.stream.write(f"\r{self.prog}: {self.what}... {spent:.0f} s\x1b[K")
                    self.stream.flush()
                    self.drawn = True

    def begin(self, what: str) -> None:
        """A stage; the first after the command's own output starts the clock again."""
        if not self.what:
            self.started = time.monotonic()
        self.what = what

    def clear(self) -> None:
        """The line taken off the terminal (drawn again at the next tick)."""
        with self.lock:
            if self.drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self.drawn = False

    def end(self) -> None:
        self.ended.set()
        self.clear()


_line: _Line | None = None


@contextmanager
def shown(prog: str, stream: TextIO | None = None) -> Iterator[None]:
    """Progress of the work inside, on `stream` (stderr) if it is a terminal."""
    global _line
    out = sys.stderr if stream is None else stream
    if _line is not None or not out.isatty():
        yield
        return
    _line = _Line(prog, out)
    _line.thread.start()
    try:
        yield
    finally:
        line, _line = _line, None
        line.end()


def stage(what: str) -> None:
    """What the work does from now on (`reading capture.heap`)."""
    if _line is not None:
        _line.begin(what)


def clear() -> None:
    """Before the command's own output on the terminal: the progress line taken off until
    the next stage."""
    if _line is not None:
        _line.what = ""
        _line.clear()
