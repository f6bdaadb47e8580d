"""Servers on loopback that answer a request as no honest backend does: a reply that is
not HTTP, one that never ends, one that arrives a byte at a time, a redirect elsewhere.
Each takes the request whole (its head and Content-Length's body), records it, then
plays its part on the socket and records what it managed to send."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_HEAD = 1 << 16


@dataclass
class Request:
    line: str
    headers: dict[str, str]  # lower-case names
    body_bytes: int


@dataclass
class RawServer:
    """Answers each connection with `answer(sock)`: what it returns, the bytes it sent."""

    answer: Callable[[socket.socket], int]
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    sent: list[int] = field(default_factory=list)  # per answer, the bytes it got out
    cut_short: threading.Event = field(default_factory=threading.Event)  # a client left

    def __post_init__(self) -> None:
        self._listening = socket.create_server(("127.0.0.1", 0))
        self.port = self._listening.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listening.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            self.requests.append(request)
            try:
                self.sent.append(self.answer(conn))
            except OSError:  # the client closed the connection before the end
                self.cut_short.set()

    def close(self) -> None:
        self._closed = True
        self._listening.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_request(conn: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece or len(data) > MAX_HEAD:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            return None
        body += piece
    return Request(line, headers, len(body))


def replying(raw: bytes) -> Callable[[socket.socket], int]:
    """An answer of these bytes, then the connection closed."""

    def answer(conn: socket.socket) -> int:
        conn.sendall(raw)
        return len(raw)

    return answer


class Endless:
    """A reply's head, then a body of `total` bytes sent as fast as it is taken; `sent`:
    how far it got."""

    def __init__(self, head: bytes, total: int) -> None:
        self.head, self.total, self.sent = head, total, 0

    def __call__(self, conn: socket.socket) -> int:
        conn.sendall(self.head)
        piece = b"x" * (1 << 20)
        while self.sent < self.total:
            self.sent += conn.send(piece)
        return self.sent


def dripping(raw: bytes, every_s: float) -> Callable[[socket.socket], int]:
    """An answer sent a byte every `every_s` seconds: a whole, honest reply, if waited for."""

    def answer(conn: socket.socket) -> int:
        for i in range(len(raw)):
            conn.sendall(raw[i : i + 1])
            time.sleep(every_s)
        return len(raw)

    return answer
