"""The parts of a push on their own: the options (endpoints, labels, headers,
credentials), the sender's queue and retries against scripted answers, and the test
doubles refusing what the real backends refuse."""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from support.backends import Backend
from support.tree_files import TreeStack, python_frame, tree_file

from mem_profiler.core.errors import UserError
from mem_profiler.parser.common.protobuf import int_field, message, string
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.report.pprof import SAMPLE_TYPES
from mem_profiler.push import sender as sender_module
from mem_profiler.push.backends.pyroscope_ingest import ingest_url
from mem_profiler.push.periods import Periods
from mem_profiler.push.sender import Refused, Sender, Upload
from mem_profiler.push.settings import AUTH_ENV, PushSettingsError, push_settings


@pytest.mark.parametrize(
    ("url", "protocol", "endpoint"),
    [
        ("http://h:4040", "pyroscope", "http://h:4040/push.v1.PusherService/Push"),
        ("https://h/prefix/ingest", "pyroscope-ingest", "https://h/prefix/ingest"),
        ("http://h:7070/", "parca", "http://h:7070/api/profiles/writeraw"),
        ("http://h:4318", "otlp", "http://h:4318/v1development/profiles"),
        ("https://collector/v1development/profiles", "otlp", None),
    ],
)
def test_the_backend_is_told_from_the_url(url, protocol, endpoint):
    settings = push_settings(url)
    assert (settings.protocol, settings.url) == (protocol, endpoint or url)


@pytest.mark.parametrize(
    ("url", "args", "says"),
    [
        ("http://h:9999", {}, "say it with --push-protocol"),
        ("ftp://h:4040", {}, "takes an http:// or https:// URL"),
        ("https://u:secret@h:4040", {}, "holds credentials, which ps shows"),
        ("http://h:4040", {"labels": ("1x=a",)}, "--label takes NAME=VALUE"),
        ("http://h:4040", {"labels": ("__name__=x",)}, "not starting with a digit or __"),
        ("http://h:4040", {"labels": ("a=1", "a=2")}, "--label a is given twice"),
        ("http://h:4040", {"labels": ("a=\x1b[2J",)}, "takes a printable value"),
        ("http://h:4040", {"headers": ("X-Org t1",)}, "takes 'Name: value'"),
        ("http://h:4040", {"headers": ("Authorization: Bearer x",)}, "--push-auth-file"),
        ("http://h:4040", {"headers": ("X-A: 1", "x-a: 2")}, "--push-header x-a is given twice"),
        ("http://h:4040", {"headers": ("X-Org: é",)}, "a value of printable ASCII"),
        (
            "http://h:4040",
            {"headers": ("Transfer-Encoding: chunked",)},
            "how the request is framed",
        ),
        ("http://h:99999", {}, "its port is not one of 1 to 65535"),
        ("http://h:4040/é", {}, "percent-encode the rest"),
    ],
)
def test_options_that_cannot_be_used_are_refused_in_a_sentence(url, args, says):
    with pytest.raises(PushSettingsError, match=re.escape(says)):
        push_settings(url, **args)
    assert issubclass(PushSettingsError, UserError)  # one line, exit 2


def test_credentials_come_from_a_private_file_or_the_environment(tmp_path, monkeypatch):
    secret = tmp_path / "token"
    secret.write_text("Bearer abc123\n")
    secret.chmod(0o644)
    with pytest.raises(PushSettingsError, match="may be read or changed by other users"):
        push_settings("http://h:4040", auth_file=str(secret))
    secret.chmod(0o600)
    assert push_settings("http://h:4040", auth_file=str(secret)).headers == {
        "Authorization": "Bearer abc123"
    }
    link = tmp_path / "link"
    link.symlink_to(secret)
    with pytest.raises(PushSettingsError, match="a link is not followed"):
        push_settings("http://h:4040", auth_file=str(link))
    monkeypatch.setenv(AUTH_ENV, "Basic user:pa ss")
    basic = push_settings("http://h:4040").headers["Authorization"]
    assert base64.b64decode(basic.removeprefix("Basic ")) == b"user:pa ss"
    monkeypatch.setenv(AUTH_ENV, "Token x")
    with pytest.raises(PushSettingsError, match=re.escape(f"${AUTH_ENV} holds neither")):
        push_settings("http://h:4040")


class Script:
    """A post that answers from a list (an int: that status; None: taken), recording
    when each call came; `gate` holds each call until set."""

    def __init__(self, answers: list[int | None], retry_after: float | None = None) -> None:
        self.answers = answers
        self.retry_after = retry_after
        self.calls: list[tuple[float, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, upload: Upload) -> None:
        self.entered.set()
        self.gate.wait()
        self.calls.append((time.monotonic(), upload.what))
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise Refused(answer, f"status {answer}", self.retry_after)


def upload(n: int, size: int = 10) -> Upload:
    return Upload("http://backend", {}, b"x" * size, f"push {n}")


@pytest.fixture
def quick_backoff(monkeypatch):
    monkeypatch.setattr(sender_module, "FIRST_BACKOFF_S", 0.05)


def test_retryable_failures_are_retried_said_once_and_the_recovery_said(quick_backoff):
    said: list[str] = []
    script = Script([503, 502, 0, None, None])
    sender = Sender(said.append, post=script)
    sender.send(upload(1))
    sender.send(upload(2))
    tally = sender.close()
    assert [what for _, what in script.calls] == ["push 1"] * 4 + ["push 2"]
    assert tally.sent == 2 and not tally.dropped
    assert len([s for s in said if "retrying" in s]) == 3  # one per kind: 503, 502, unreachable
    assert len([s for s in said if "resumed" in s]) == 1
    gaps = [b - a for (a, _), (b, _) in zip(script.calls, script.calls[1:3], strict=False)]
    assert gaps[1] >= 0.05 * 2 * 0.5  # the backoff doubled (jitter at most halves it)


def test_retry_after_is_honoured():
    script = Script([429, None], retry_after=0.3)
    sender = Sender(lambda _: None, post=script)
    sender.send(upload(1))
    sender.close()
    (first, _), (second, _) = script.calls
    assert second - first >= 0.3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 422])
def test_other_refusals_are_not_retried(status):
    said: list[str] = []
    script = Script([status, status])
    sender = Sender(said.append, post=script)
    sender.send(upload(1))
    sender.send(upload(2))
    tally = sender.close()
    assert len(script.calls) == 2
    assert tally.dropped == {f"refused (HTTP {status})": 2}
    assert len(said) == 1 and "not retried" in said[0]


def test_the_queue_is_bounded_and_drops_the_oldest_waiting():
    said: list[str] = []
    script = Script([])
    script.gate.clear()  # the first request hangs: the rest wait in the queue
    sender = Sender(said.append, post=script, max_requests=3, max_bytes=1000)
    sender.send(upload(0))
    script.entered.wait()
    for n in range(1, 10):
        sender.send(upload(n))
    sender.send(upload(10, size=985))  # over the bytes with 8, 9 and it: 8 goes too
    script.gate.set()
    tally = sender.close()
    sent = [what for _, what in script.calls]
    assert sent == ["push 0", "push 9", "push 10"]  # 0 was in flight: never dropped
    assert tally.sent == 3 and tally.dropped == {"the queue was full": 8}
    assert sum("not taking them fast enough" in s for s in said) == 1


def test_close_drops_what_it_cannot_send_in_its_time(quick_backoff):
    script = Script([503] * 1000)
    sender = Sender(lambda _: None, post=script)
    for n in range(3):
        sender.send(upload(n))
    tally = sender.close(drain_s=0.3)
    assert tally.dropped == {"HTTP 503 at the end": 1, "queued at the end": 2}
    assert tally.summary() == (
        "pushed 0 profile requests; 3 dropped (2 queued at the end, 1 HTTP 503 at the end)"
    )


# --- the doubles refuse what the real servers refuse --------------------------------


def post(url: str, body: bytes, content_type: str, **headers: str) -> tuple[int, str]:
    request = urllib.request.Request(
        url, body, {"Content-Type": content_type, **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def pprof(strings: list[str], time_nanos: int | None = None, values: int = 1) -> bytes:
    """A small pprof: one sample type, one location of one function, one sample."""
    out = message(1, int_field(1, 1) + int_field(2, 2))
    out += message(2, message(1, b"\x01") + message(2, b"\x05" * values))
    out += message(4, int_field(1, 1) + message(4, int_field(1, 1)))
    out += message(5, int_field(1, 1) + int_field(2, 3))
    out += b"".join(message(6, s.encode()) for s in strings)
    return out + int_field(9, time.time_ns() if time_nanos is None else time_nanos)


GOOD = ["", "inuse_space", "bytes", "f"]


def pyroscope_push(profile: bytes, labels: dict[str, str]) -> bytes:
    pairs = b"".join(message(1, string(1, k) + string(2, v)) for k, v in labels.items())
    return message(1, pairs + message(2, message(1, profile)))


MEMORY = {"__name__": "memory", "service_name": "s"}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (pyroscope_push(pprof(GOOD), MEMORY), "application/x-protobuf", 415, "content type"),
        (pyroscope_push(pprof(GOOD), {"service_name": "s"}), "application/proto", 400, "metric"),
        (
            pyroscope_push(pprof(GOOD), {**MEMORY, **{f"l{i}": "v" for i in range(29)}}),
            "application/proto",
            400,
            "too many labels",
        ),
        (pyroscope_push(pprof(["x", *GOOD[1:]]), MEMORY), "application/proto", 400, "string 0"),
        (
            pyroscope_push(pprof(GOOD, time.time_ns() - 2 * 3600 * 10**9), MEMORY),
            "application/proto",
            400,
            "time out of the accepted window",
        ),
        (pyroscope_push(pprof(GOOD, values=2), MEMORY), "application/proto", 400, "values"),
        (b"", "application/proto", 400, "no profiles received"),
    ],
    ids=["content-type", "no-name", "labels", "string-0", "time", "values", "empty"],
)
def test_the_pyroscope_double_refuses_what_pyroscope_refuses(body, content_type, status, says):
    with Backend() as backend:
        got, text = post(f"{backend.url}/push.v1.PusherService/Push", body, content_type)
        assert not backend.pushes
    assert got == status and says in text
    if status == 400:
        assert json.loads(text)["code"] == "invalid_argument"


def test_the_doubles_take_a_good_profile_and_check_the_tenant():
    with Backend(tenant="t1") as backend:
        body = pyroscope_push(gzip.compress(pprof(GOOD)), MEMORY)
        url = f"{backend.url}/push.v1.PusherService/Push"
        assert post(url, body, "application/proto")[0] == 401
        assert post(url, body, "application/proto", **{"X-Scope-OrgID": "t1"})[0] == 200
        assert backend.pushes[0].profile.by_function("inuse_space") == {"f": 5}


def test_the_ingest_double_refuses_a_bad_name_or_profile():
    with Backend() as backend:
        url = f"{backend.url}/ingest?format=pprof&name="
        assert post(url + "bad%20name", pprof(GOOD), "application/octet-stream")[0] == 400
        assert post(url + "app%7Bk%3Dv%7D", b"\xff\xff", "application/octet-stream")[0] == 422
        assert post(url + "app%7Bk%3Dv%7D", pprof(GOOD), "application/octet-stream")[0] == 200
        assert backend.pushes[0].labels == {
            "service_name": "app",
            "k": "v",
            "__delta__": "false",
            "__name__": "memory",
        }


def parca_body(profile: bytes, labels: dict[str, str]) -> bytes:
    series = {
        "labels": {"labels": [{"name": k, "value": v} for k, v in labels.items()]},
        "samples": [{"rawProfile": base64.b64encode(profile).decode()}],
    }
    return json.dumps({"series": [series]}).encode()


def test_the_parca_double_refuses_what_parca_refuses():
    out_of_order = pprof(GOOD).replace(
        message(5, int_field(1, 1) + int_field(2, 3)), message(5, int_field(1, 2) + int_field(2, 3))
    )
    with Backend() as backend:
        url = f"{backend.url}/api/profiles/writeraw"
        assert (
            post(url, parca_body(pprof(GOOD), {"service_name": "s"}), "application/json")[0] == 400
        )
        assert (
            post(url, parca_body(out_of_order, {"__name__": "memory"}), "application/json")[0]
            == 400
        )
        assert post(url, b"{", "application/json")[0] == 400
        assert (
            post(url, parca_body(pprof(GOOD), {"__name__": "memory"}), "application/json")[0] == 200
        )


def test_the_otlp_double_refuses_what_the_signal_forbids():
    from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2

    req = profiles_service_pb2.ExportProfilesServiceRequest()
    d = req.dictionary
    d.string_table.extend(["", "inuse_space", "bytes"])
    for table in (d.mapping_table, d.location_table, d.function_table, d.link_table):
        table.add()
    d.attribute_table.add()
    d.stack_table.add()
    d.stack_table.add().location_indices.append(0)
    profile = req.resource_profiles.add().scope_profiles.add()
    profile.scope.name = "x"
    p = profile.profiles.add()
    p.sample_type.type_strindex = 1
    p.period_type.type_strindex = 1
    p.samples.add(stack_index=1, values=[5])
    with Backend() as backend:
        url = f"{backend.url}/v1development/profiles"
        good = req.SerializeToString()
        assert post(url, good, "application/json")[0] == 415
        assert post(url, b"\xff\xff\xff", "application/x-protobuf")[0] == 400
        assert post(url, good, "application/x-protobuf")[0] == 200
        d.string_table[0] = "x"
        assert post(url, req.SerializeToString(), "application/x-protobuf")[0] == 400
        d.string_table[0] = ""
        d.location_table[0].address = 1
        assert post(url, req.SerializeToString(), "application/x-protobuf")[0] == 400
        d.location_table[0].address = 0
        p.samples[0].stack_index = 9
        assert post(url, req.SerializeToString(), "application/x-protobuf")[0] == 400
        assert len(backend.otlp) == 1


def test_periods_push_a_sample_per_function_and_line_and_what_each_added(tmp_path):
    """A snapshot's stacks are pushed merged as pprof shows them: two stacks apart only
    by their Python frame's address (another instruction of the same line) are one
    sample, one at another line another; the next snapshot's allocated figures are what
    each added since (rate 1: the counts are the figures)."""
    # the same function and line at two addresses, and the function at another line
    header = [
        "# exe: /bin/true", "# heap: host", "# window_start_ns: 1",
        "# python: 3.11.7 0x402000 0x402400",
        *(f"# python_frame: 0x{python_frame(i):x} {line} 8 step\tapp.py"
          for i, line in ((1, 10), (2, 10), (3, 99))),
    ]  # fmt: skip
    native = [0x401200, 0x402010, 0x401230, 0x401890, 0x400F10]  # 0x402010: the eval loop

    def snapshot(name: str, first: int, more: int) -> Path:
        stacks = [
            TreeStack(native, (1, 100, first, 100 * first), python=[[python_frame(1)]]),
            TreeStack(native, (1, 50, 1, 50), python=[[python_frame(2)]]),
            TreeStack(native, (2, 30, more, 15 * more), python=[[python_frame(3)]]),
        ]
        path = tmp_path / name
        path.write_bytes(tree_file(1, header, stacks))
        return path

    periods = Periods(4242)
    firsts = periods.cut_files([read_heap(snapshot("1.heap", 2, 2))], 1)
    nexts = periods.cut_files([read_heap(snapshot("2.heap", 5, 4))], 2)
    for period, allocated in ((firsts[0], {10: [3, 250], 99: [2, 30]}),
                              (nexts[0], {10: [3, 300], 99: [2, 30]})):  # fmt: skip
        tables = period.tables
        assert [kind for kind, _ in SAMPLE_TYPES[:2]] == ["alloc_objects", "alloc_space"]
        assert len(tables.samples) == 2
        by_line = {}
        for ids, values in tables.samples:
            lines = [line for _, line in tables.locations[ids[0] - 1].lines]
            by_line[lines[0]] = values
        assert sorted(by_line) == [10, 99]
        assert {line: values[:2] for line, values in by_line.items()} == allocated
        figures = np.array([values for _, values in tables.samples])  # SAMPLE_TYPES' order
        assert figures[:, :2].sum() == sum(map(sum, allocated.values()))


def test_the_ingest_query_follows_a_query_of_the_users():
    period = SimpleNamespace(start_ns=3 * 10**9, end_ns=5 * 10**9)
    url = ingest_url("http://h/ingest?orgId=7", period, {"service_name": "svc"})  # type: ignore[arg-type]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["orgId"] == ["7"] and query["name"] == ["svc{}"], url
    assert (query["from"], query["until"]) == (["3"], ["5"])
