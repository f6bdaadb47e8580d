"""A backend that lies: replies that are not HTTP, that never end, that come a byte at a
time, redirects elsewhere. Each costs one counted, said push and no more (time, memory,
the credentials), and the pushes after it go on."""

from __future__ import annotations

import re

import pytest
from support.hostile_servers import Endless, RawServer, dripping, replying
from support.paths import MEM_PROFILER
from support.processes import run_with_peak_rss, wait_for

from mem_profiler.push import sender as sender_module
from mem_profiler.push.sender import MALFORMED, MAX_MESSAGE_BYTES, Refused, Sender, Upload, post

TAKEN = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
NOT_HTTP = {
    "bad status line": b"HTTX/1.1 200 OK\r\n\r\n",
    "101 headers": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)),
    "header line of 70 kB": b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
}


def upload(url: str, n: int = 1) -> Upload:
    return Upload(url, {"Authorization": "Bearer secret"}, b"profile", f"push {n}")


@pytest.mark.parametrize("reply", list(NOT_HTTP.values()), ids=list(NOT_HTTP))
def test_a_reply_that_is_not_http_is_one_dropped_push_and_the_next_goes(reply):
    said: list[str] = []
    with RawServer(replying(reply)) as hostile, RawServer(replying(TAKEN)) as honest:
        with pytest.raises(Refused) as refusal:
            post(upload(hostile.url))
        assert refusal.value.status == MALFORMED and not refusal.value.retryable
        sender = Sender(said.append)
        sender.send(upload(hostile.url, 1))
        sender.send(upload(honest.url, 2))
        tally = sender.close()
    assert (tally.sent, dict(tally.dropped)) == (1, {"refused (bad reply)": 1}), said
    assert len(honest.requests) == 1
    assert "its reply is not HTTP" in said[0], said


def test_a_refusal_whose_body_is_cut_short_is_said_by_its_status():
    truncated = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc"
    with RawServer(replying(truncated)) as hostile, pytest.raises(Refused) as refusal:
        post(upload(hostile.url))
    assert (refusal.value.status, str(refusal.value)) == (500, "Oops")


@pytest.mark.parametrize(
    ("status", "location"), [(302, None), (303, "ftp://127.0.0.1/x"), (307, None), (308, None)]
)
def test_a_redirect_is_refused_and_nothing_goes_where_it_points(status, location):
    with RawServer(replying(TAKEN)) as elsewhere:
        where = location or f"{elsewhere.url}/stolen"
        redirect = f"HTTP/1.1 {status} Moved\r\nLocation: {where}\r\nContent-Length: 0\r\n\r\n"
        with RawServer(replying(redirect.encode())) as hostile:
            with pytest.raises(Refused) as refusal:
                post(upload(hostile.url))
            assert len(hostile.requests) == 1
    assert refusal.value.status == status and not refusal.value.retryable
    assert str(refusal.value) == f"a redirect to {where}, not followed: give --push that URL"
    assert elsewhere.connections == 0


@pytest.mark.parametrize("status", [200, 500])
def test_a_reply_that_never_ends_is_read_no_further_than_its_message(status):
    """A 1 GiB body: a success's is not read, a refusal's only its first bytes; the
    connection is closed, which ends the server's sending (a few MB in the kernel's
    buffers at most)."""
    head = b"HTTP/1.1 %d x\r\nContent-Length: %d\r\n\r\n" % (status, 1 << 30)
    endless = Endless(head, 1 << 30)
    with RawServer(endless) as hostile:
        if status == 200:
            post(upload(hostile.url))
        else:
            with pytest.raises(Refused, match=f"^{'x' * 200}$"):
                post(upload(hostile.url))
        wait_for(hostile.cut_short.is_set, what="the client to close the connection")
    assert MAX_MESSAGE_BYTES < 1 << 20
    assert endless.sent < 64 << 20, endless.sent


def test_a_reply_a_byte_at_a_time_ends_at_the_request_deadline(monkeypatch):
    """Each byte comes well within a read's timeout; the whole reply would take 4 s. The
    request's deadline (1 s here) ends it, as no answer, retried later."""
    monkeypatch.setattr(sender_module, "REQUEST_TIMEOUT_S", 1.0)
    with RawServer(dripping(TAKEN, 0.1)) as hostile:
        with pytest.raises(Refused, match=r"^no answer within 1 s$") as refusal:
            post(upload(hostile.url))
        wait_for(hostile.cut_short.is_set, what="the client to close the connection")
    assert refusal.value.retryable


def test_an_unexpected_failure_is_one_counted_drop_and_the_thread_goes_on():
    said: list[str] = []
    calls: list[str] = []

    def failing_once(up: Upload) -> None:
        calls.append(up.what)
        if len(calls) == 1:
            "é".encode("ascii")  # what a request that cannot be made raises

    sender = Sender(said.append, post=failing_once)
    sender.send(upload("http://backend", 1))
    sender.send(upload("http://backend", 2))
    tally = sender.close()
    assert calls == ["push 1", "push 2"]
    assert (tally.sent, dict(tally.dropped)) == (1, {"failed": 1})
    assert said == [
        "push 1 could not be sent (UnicodeEncodeError: 'ascii' codec can't encode character "
        "'\\xe9' in position 0: ordinal not in range(128)); such profiles are dropped"
    ]


def test_run_push_to_a_lying_backend_exits_with_the_programs_status(tmp_path):
    """The whole command: a backend whose replies are not HTTP costs the program nothing,
    the pusher's memory stays small, the loss is said in a line."""
    with RawServer(replying(NOT_HTTP["101 headers"])) as hostile:
        status, err, peak_kib = run_with_peak_rss(
            MEM_PROFILER, "run", "-o", tmp_path / "s_", "--push", hostile.url,
            "--push-protocol", "pyroscope", "--", "sh", "-c", "exit 3",
        )  # fmt: skip
    assert status == 3, err
    assert "Traceback" not in err
    assert re.search(r"pushed 0 profile requests; 1 dropped \(1 refused \(bad reply\)\)", err), err
    assert peak_kib < 100 << 10, peak_kib
