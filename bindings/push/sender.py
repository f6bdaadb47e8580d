"""The uploads: a bounded queue of requests and one thread that sends them, so that a
backend that is down, slow or refusing costs the capture nothing but the requests it
drops. Retries follow the OTLP specification (and Grafana Alloy): 429, 502, 503, 504 and
failed connections are retried with jittered exponential backoff, honouring Retry-After;
any other refusal is final. Each kind of failure is said once, not per attempt."""

from __future__ import annotations

import collections
import contextlib
import email.utils
import http.client
import json
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from mem_profiler.core.escape import visible

RETRYABLE = frozenset({429, 502, 503, 504})
UNREACHABLE = 0  # Refused.status of a connection that failed or timed out: retried
UNTRUSTED = -1  # ... of a server whose certificate is not trusted: not retried
MALFORMED = -2  # ... of a reply that is not HTTP: not retried
FAILED = -3  # ... of a request that could not be made: not retried
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 300.0  # a longer Retry-After is taken as this
# A request's whole time, from connecting to the reply's head and message, however
# slowly the server sends them (a timeout per read would let a byte a second through).
REQUEST_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 4096  # of a refusal's body, for its message; a success's is not read
# Requests held while the backend does not take them: past either bound the oldest is
# dropped (the newest in-use figures are worth more).
QUEUE_REQUESTS = 64
QUEUE_BYTES = 64 << 20
# How long the end waits for what is queued, a request in flight included: a backend that
# is down or stalls delays the end by no more than this (docs/push.md).
END_DRAIN_S = 5.0


@dataclass
class Upload:
    """One request to a backend: where, with which headers, what, and what it holds (in
    words, for the messages)."""

    url: str
    headers: dict[str, str]
    body: bytes
    what: str


@dataclass
class Tally:
    """What became of the uploads so far."""

    sent: int = 0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)

    def summary(self) -> str:
        lost = sum(self.dropped.values())
        if not lost:
            return f"pushed {self.sent} profile request{'s' * (self.sent != 1)}"
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.dropped.most_common())
        return f"pushed {self.sent} profile requests; {lost} dropped ({kinds})"


class Refused(Exception):
    """A backend's answer that is not a success: its status (0: no answer), the
    server's message, and how long it asked us to wait."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status == UNREACHABLE or self.status in RETRYABLE

    @property
    def kind(self) -> str:
        kinds = {UNREACHABLE: "unreachable", UNTRUSTED: "TLS", MALFORMED: "bad reply"}
        return kinds.get(self.status, "failed" if self.status == FAILED else f"HTTP {self.status}")


def post(upload: Upload) -> None:
    """Sends one upload; Refused when it is not taken. TLS checks the server against the
    system's certificate authorities. A redirect is a refusal: following it would send
    the credentials and profiles to a place the user did not name."""
    parts = urllib.parse.urlsplit(upload.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=REQUEST_TIMEOUT_S, context=context
        )
    else:
        conn = http.client.HTTPConnection(
            parts.hostname or "", parts.port, timeout=REQUEST_TIMEOUT_S
        )
    deadline = _Deadline(conn, REQUEST_TIMEOUT_S)
    try:
        conn.connect()
        deadline.check()
        conn.request("POST", target, upload.body, upload.headers)
        reply = conn.getresponse()
        if 200 <= reply.status < 300:
            return
        if 300 <= reply.status < 400:
            where = _printable(reply.getheader("Location") or "elsewhere", 200)
            raise Refused(
                reply.status, f"a redirect to {where}, not followed: give --push that URL"
            )
        message = _server_message(_message_body(reply)) or _printable(reply.reason, 200)
        raise Refused(reply.status, message, _retry_after(reply.headers))
    except ssl.SSLCertVerificationError as err:
        raise Refused(UNTRUSTED, str(err.verify_message or err)) from None
    except (OSError, http.client.HTTPException) as err:
        if deadline.passed:
            raise Refused(UNREACHABLE, f"no answer within {REQUEST_TIMEOUT_S:.0f} s") from None
        if isinstance(err, OSError):
            raise Refused(UNREACHABLE, str(err.strerror or err)) from None
        raise Refused(
            MALFORMED, f"its reply is not HTTP ({type(err).__name__}: {_printable(str(err), 80)})"
        ) from None
    finally:
        deadline.cancel()
        conn.close()


class _Deadline:
    """Ends a connection's blocking calls when a request's time is up: its socket shut
    down from a timer, which no read of a slow server outlasts."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.passed = False
        self._conn = conn
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        self.passed = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def check(self) -> None:
        """TimeoutError where the time ran out before the connection was made (the
        timer found no socket to shut down)."""
        if self.passed:
            raise TimeoutError

    def cancel(self) -> None:
        self._timer.cancel()


def _message_body(reply: http.client.HTTPResponse) -> bytes:
    """The first bytes of a refusal's body, for its message; none of one cut short."""
    try:
        return reply.read(MAX_MESSAGE_BYTES)
    except (OSError, http.client.HTTPException):
        return b""


def _printable(text: str, limit: int) -> str:
    """A server's words as one line at most `limit` long, what a terminal would act on
    escaped."""
    return visible(" ".join(text.split())[:limit])


def _server_message(body: bytes) -> str:
    """What the server said, in a line: a JSON error's message (Connect's, grpc-gateway's),
    plain text as it is; nothing of a binary body (OTLP's google.rpc.Status)."""
    text = body.decode("utf-8", "replace")
    with contextlib.suppress(ValueError, AttributeError, RecursionError):
        text = str(json.loads(text).get("message", text))
    line = " ".join(text.split())
    return line[:200] if line.isprintable() else ""


def _retry_after(headers: object) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), None where absent or unreadable."""
    value = getattr(headers, "get", lambda _: None)("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), MAX_RETRY_AFTER_S)


class Sender:
    """Sends the uploads given to `send` on a thread of its own, in order; `say` gets
    each line for the user. `close` sends what is queued, for at most `drain_s`."""

    def __init__(
        self,
        say: Callable[[str], None],
        post: Callable[[Upload], None] = post,
        max_requests: int = QUEUE_REQUESTS,
        max_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.say = say
        self.tally = Tally()
        self._post = post
        self._max_requests, self._max_bytes = max_requests, max_bytes
        self._queue: collections.deque[Upload] = collections.deque()
        self._queued_bytes = 0
        self._in_flight = False
        self._wake = threading.Condition()
        self._closing = False
        self._drain_until = float("inf")
        self._said: set[str] = set()
        self._failing_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="mem_profiler push", daemon=True)
        self._thread.start()

    def send(self, upload: Upload) -> None:
        with self._wake:
            self._queue.append(upload)
            self._queued_bytes += len(upload.body)
            while len(self._queue) > 1 and (
                len(self._queue) > self._max_requests or self._queued_bytes > self._max_bytes
            ):  # the newest is kept, however large
                self._queued_bytes -= len(self._queue.popleft().body)
                self._drop("the queue was full", "the backend is not taking them fast enough")
            self._wake.notify()

    def close(self, drain_s: float = END_DRAIN_S) -> Tally:
        """Sends what is queued (retrying for at most `drain_s`), drops the rest; the
        tally. Returns within `drain_s` whatever the backend does: a request still in
        flight then (a server that answers slowly) is counted dropped and left to the
        thread, which the process's end takes with it."""
        end = time.monotonic() + drain_s
        with self._wake:
            self._closing = True
            # retries stop a little before the end, for the last answer to be counted
            self._drain_until = end - min(drain_s / 4, 0.25)
            self._wake.notify()
        self._thread.join(max(end - time.monotonic(), 0.0))
        with self._wake:
            if self._thread.is_alive():
                kinds = ["queued at the end"] * len(self._queue)
                for kind in kinds + ["in flight at the end"] * self._in_flight:
                    self._drop(kind, "the time to send what was queued ran out")
                self._queue.clear()
            return Tally(self.tally.sent, collections.Counter(self.tally.dropped))

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                upload = self._queue.popleft()  # in flight: no longer the queue's to drop
                self._queued_bytes -= len(upload.body)
                late = time.monotonic() >= self._drain_until
                self._in_flight = not late
            if late:
                self._drop("queued at the end", "the time to send what was queued ran out")
            else:
                self._deliver(upload)

    def _deliver(self, upload: Upload) -> None:
        """Sends `upload`, retrying while the failure is one to retry and time is left."""
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                self._post(upload)
            except Exception as err:  # whatever befalls one request ends only that one
                refusal = (
                    err
                    if isinstance(err, Refused)
                    else Refused(FAILED, f"{type(err).__name__}: {err}")
                )
                if refusal.retryable and self._wait(refusal, backoff):
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                with self._wake:
                    self._in_flight = False
                    self._fail(refusal, upload)
            else:
                with self._wake:
                    self._in_flight = False
                    self.tally.sent += 1
                self._recovered()
            return

    def _wait(self, refusal: Refused, backoff: float) -> bool:
        """Says the failure (once per kind), waits before the retry; False when closing
        leaves no time for one."""
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self._say_once(
            refusal.kind,
            f"the backend did not take a profile ({refusal.kind}: {refusal}); "
            "retrying with backoff, profiles queued meanwhile",
        )
        delay = refusal.retry_after if refusal.retry_after is not None else backoff
        delay *= random.uniform(0.5, 1.5) if refusal.retry_after is None else 1.0
        with self._wake:
            end = min(time.monotonic() + delay, self._drain_until)
            while (left := end - time.monotonic()) > 0:
                self._wake.wait(left)
                end = min(end, self._drain_until)
            return time.monotonic() < self._drain_until

    def _fail(self, refusal: Refused, upload: Upload) -> None:
        if refusal.retryable:
            self._drop(f"{refusal.kind} at the end", "the backend was still failing at the end")
        elif refusal.status == UNTRUSTED:
            self._drop(
                "untrusted certificate",
                f"the backend's certificate is not trusted ({refusal}): add its authority to "
                "the system's (or name a file of them in SSL_CERT_FILE); profiles are dropped, "
                "not retried",
            )
        elif refusal.status == FAILED:
            self._drop(
                "failed",
                f"{upload.what} could not be sent ({refusal}); such profiles are dropped",
            )
        else:
            self._drop(
                f"refused ({refusal.kind})",
                f"the backend refused {upload.what} ({refusal.kind}: {refusal}); "
                "such profiles are dropped, not retried",
            )

    def _drop(self, kind: str, first_time: str) -> None:
        self.tally.dropped[kind] += 1
        self._say_once(kind, first_time)

    def _recovered(self) -> None:
        if self._failing_since is not None:
            self.say(f"pushes resumed after {time.monotonic() - self._failing_since:.0f} s")
            self._failing_since = None

    def _say_once(self, kind: str, line: str) -> None:
        if kind not in self._said:
            self._said.add(kind)
            self.say(line)
