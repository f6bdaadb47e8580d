"""A stream that says it is a terminal, for the progress line's tests."""

from __future__ import annotations

import io
import threading


class Terminal(io.StringIO):
    """What a terminal was sent, as a stream that says it is one."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self.lock:
            return super().write(s)

    def sent(self) -> str:
        with self.lock:
            return self.getvalue()
