"""Pushes to the test doubles of Pyroscope, Parca and an OTLP Collector (support/backends.py),
from `mem_profiler -p PID --push`, `run --push` and `agent --push`: what each push holds
against the fixtures' own counts and against a dump taken meanwhile, the alloc periods
adding up to the window, the labels, and a backend that is down, refusing or slow."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from standins import truth
from standins.build import build_device_fixture, standin_env
from support.backends import Backend, otlp_by_function
from support.paths import MEM_PROFILER
from support.processes import wait_for
from support.profiling import build_id, report
from support.reports import go_pprof_top
from support.sampling_math import assert_estimate, relative_sd
from support.targets import Server

from mem_profiler.control.control_block import CMD_SNAPSHOT, ControlBlock, ControlError
from mem_profiler.control.sampler_lib import library_path
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.core.version import VERSION
from mem_profiler.live_view import LiveView, WindowGone
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.push.backends.pprof_body import LEFT_OUT
from mem_profiler.push.sender import END_DRAIN_S

MiB = 1 << 20
CHURN = 65536  # push_steps' site_churn block, one a millisecond


_pushers: list[subprocess.Popen] = []  # this test's, each in a session of its own


@pytest.fixture(autouse=True)
def no_pusher_left():
    """A test that fails before its pusher ends leaves nothing running: the pusher's
    session (it and the program it runs) is killed."""
    yield
    while _pushers:
        proc = _pushers.pop()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def pusher(*args: str | Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [MEM_PROFILER, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _pushers.append(proc)
    return proc


def ended(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    """Its exit status and stderr once it ends."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.mark.parametrize("protocol", ["pyroscope", "pyroscope-ingest", "parca", "otlp"])
def test_a_running_process_is_pushed_every_period(server, server_exe, protocol):
    """-p PID --push: every period a profile of the server's heap whose rings hold their
    16 MiB each, labelled, the periods contiguous; the tenant header and the user's label
    reach the backend; the summary counts the requests."""
    started = time.time_ns()
    with Backend(tenant="t1") as backend:
        proc = pusher(
            "-p", server.pid, "--push", backend.url, "--push-protocol", protocol,
            "--push-every", "1", "--label", "team=memory", "--push-header", "X-Scope-OrgID: t1",
        )  # fmt: skip
        wait_for(lambda: backend.requests >= 3, 60, "three pushes")
        proc.send_signal(signal.SIGINT)  # pushes once more, then ends
        code, err = ended(proc)
    assert code == 0, err

    def check_rings(inuse: Mapping[str, float], first_ns: int, end_ns: int) -> None:
        """The rings in use at the end of a period, by the server's own count: the window
        opened after `started`, before the first period began at first_ns."""
        fewest = server.history.iterations(server.pid, first_ns, end_ns)[0]
        most = server.history.iterations(server.pid, started, end_ns)[1]
        server.check_rings(inuse, 1024, fewest, most)

    assert not backend.refused, backend.refused
    m = re.search(r"pushed (\d+) profile requests?", err)
    assert m is not None, err
    sent = int(m[1])
    assert sent == backend.requests >= 4, err
    if protocol == "otlp":
        periods = [req.resource_profiles[0].scope_profiles[0].profiles[0] for req in backend.otlp]
        for req, period in zip(backend.otlp, periods, strict=True):
            inuse = otlp_by_function(req, "inuse_space")[("server", "host")]
            end = period.time_unix_nano + period.duration_nano
            check_rings(inuse, periods[0].time_unix_nano, end)
            attrs = {kv.key: kv.value for kv in req.resource_profiles[0].resource.attributes}
            assert attrs["process.pid"].int_value == server.pid
            assert attrs["process.executable.path"].string_value == str(server_exe)
            assert attrs["team"].string_value == "memory"
        return
    assert len(backend.pushes) == sent
    expected = {
        "__name__": "memory",
        "__delta__": "false",
        "service_name": "server",
        "host": socket.gethostname(),
        "pid": str(server.pid),
        "exe": str(server_exe),
        "build_id": build_id(server_exe),
        "heap": "host",
        "version": VERSION,
        "team": "memory",
    }
    if protocol == "parca":
        del expected["__delta__"]
    first = backend.pushes[0].profile.time_nanos
    for push in backend.pushes:
        assert push.labels == expected
        inuse = push.profile.by_function("inuse_space")
        end = push.profile.time_nanos + push.profile.duration_nanos
        check_rings(inuse, first, end)
    times = [(p.profile.time_nanos, p.profile.duration_nanos) for p in backend.pushes]
    for (start, length), (after, _) in zip(times, times[1:], strict=False):
        assert after == start + length  # contiguous: nothing between two periods is lost


def test_run_push_adds_up_to_the_window_and_agrees_with_a_dump(build_fixture, tmp_path):
    """run --push: the alloc figures of the pushes add up to the window's total in the
    file written at exit, within a byte a push, and to the program's own count within the
    sampling error; a dump taken between pushes shows the kept blocks the push after it
    shows, sample for sample."""
    exe = build_fixture("push_steps")
    stop = tmp_path / "stop"
    with Backend() as backend:
        proc = pusher(
            "run", "-c", "65536", "-o", tmp_path / "p_", "--push", backend.url,
            "--push-protocol", "pyroscope", "--push-every", "1", "--", exe, "6", stop,
        )  # fmt: skip
        wait_for(lambda: len(backend.pushes) >= 2, 60, "two pushes")
        pid = int(backend.pushes[0].labels["pid"])
        dump = subprocess.run(
            [MEM_PROFILER, "dump", "-p", str(pid)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        after_dump = len(backend.pushes)
        wait_for(lambda: len(backend.pushes) >= 6, 60, "six pushes")
        stop.touch()
        code, err = ended(proc)
    assert code == 0, err
    final = max(Path(p) for p in re.findall(r"wrote (\S+\.heap)", err))  # the dump's is 0001
    pushes = backend.pushes
    assert len(pushes) >= 6, err
    assert {p.labels["service_name"] for p in pushes} == {"push_steps"}
    pushed = sum(p.profile.by_function("alloc_space").get("site_churn", 0) for p in pushes)
    in_file = report(final, exe, "alloc_space")["site_churn"][0]
    assert abs(pushed - in_file) <= len(pushes)
    assert_estimate(pushed, 6000 * CHURN, relative_sd(6000, CHURN, 65536), 0.1)
    kept_then = report(Path(dump), exe)["site_keep"][0]
    kept_pushed = pushes[after_dump].profile.by_function("inuse_space")["site_keep"]
    assert abs(kept_pushed - kept_then) <= 1  # the same samples, rounded once
    assert_estimate(kept_pushed, 8 * MiB, relative_sd(8, MiB, 65536), 0.01)


@pytest.mark.alone  # it opens windows in every process with the sampler
def test_the_agent_pushes_each_process_as_it_comes_and_goes(build_fixture, server_exe):
    """agent --push: three processes of different programs, one started and one ended
    while the agent runs: each one's series arrives with only its own stacks, the ended
    one's stops, the started one's begins."""
    grower = Server(build_fixture("grower"))
    first = Server(server_exe)
    started = None
    try:
        with Backend() as backend:
            proc = pusher("agent", "--push", backend.url, "--push-protocol", "pyroscope",
                          "--push-every", "1")  # fmt: skip

            def pids() -> set[int]:
                return {int(p.labels["pid"]) for p in backend.pushes}

            wait_for(lambda: {grower.pid, first.pid} <= pids(), 60, "both pushed")
            first.stop()
            started = Server(build_fixture("push_steps"), "600")  # not idle: see below
            wait_for(lambda: started.pid in pids(), 60, "the new one pushed")
            count_at_start = len(backend.pushes)
            wait_for(lambda: len(backend.pushes) > count_at_start + 4, 60, "more pushes")
            proc.send_signal(signal.SIGTERM)
            code, err = ended(proc)
    finally:
        for s in (grower, first, started):
            if s is not None:
                s.stop()
    assert code == 0, err
    own = {
        grower.pid: {"site_grow", "site_churn"},
        first.pid: {"site_pages", "site_small", "site_transient"},
        started.pid: {"site_keep", "site_churn"},
    }
    last_of_first = max(
        i for i, p in enumerate(backend.pushes) if p.labels["pid"] == str(first.pid)
    )
    first_of_started = min(
        i for i, p in enumerate(backend.pushes) if p.labels["pid"] == str(started.pid)
    )
    assert last_of_first < first_of_started
    for push in backend.pushes:
        pid = int(push.labels["pid"])
        if pid not in own:  # another test's idle process: the agent pushes it too
            continue
        functions = {f for f, v in push.profile.by_function("alloc_space").items() if v}
        functions |= {f for f, v in push.profile.by_function("inuse_space").items() if v}
        assert functions <= own[pid] | {"main"}, (pid, functions)
    assert f"process {first.pid} ended" in err


@pytest.mark.parametrize(("status", "retry_after"), [(503, None), (429, "1")])
def test_a_backend_down_then_back_loses_nothing(server, status, retry_after):
    """503 (or 429 with Retry-After) for a while: said once, the profiles queued and
    retried with backoff, then all delivered once it is back, the recovery said; nothing
    dropped."""
    with Backend() as backend:
        backend.fail_with, backend.retry_after = status, retry_after
        proc = pusher("-p", server.pid, "--push", backend.url, "--push-protocol", "pyroscope",
                      "--push-every", "0.5")  # fmt: skip
        wait_for(lambda: backend.requests >= 3, 60, "three refused attempts")
        backend.fail_with = None
        wait_for(lambda: len(backend.pushes) >= 6, 60, "the queue delivered and more")
        proc.send_signal(signal.SIGINT)
        code, err = ended(proc)
    assert code == 0, err
    assert err.count("retrying with backoff") == 1, err
    assert re.search(r"pushes resumed after \d+ s", err), err
    m = re.search(r"pushed (\d+) profile requests\n", err)
    assert m is not None, err
    sent = int(m[1])
    assert sent == len(backend.pushes)
    times = [(p.profile.time_nanos, p.profile.duration_nanos) for p in backend.pushes]
    for (start, length), (after, _) in zip(times, times[1:], strict=False):
        assert after == start + length  # in order, none lost while it was down


@pytest.mark.parametrize("status", [400, 401, 413])
def test_a_refusing_backend_is_said_once_and_not_retried(server, status):
    """400, 401, 413: each profile is sent once and dropped, the refusal said once with
    the server's message, the drop counted in the summary and the exit status."""
    with Backend() as backend:
        backend.fail_with = status
        proc = pusher("-p", server.pid, "--push", backend.url, "--push-protocol", "otlp",
                      "--push-every", "0.5")  # fmt: skip
        wait_for(lambda: backend.requests >= 3, 60, "three refused pushes")
        proc.send_signal(signal.SIGTERM)
        code, err = ended(proc)
        requests = backend.requests
    assert code == 1, err
    assert err.count("refused") == 2, err  # the line, and the summary
    assert f"(HTTP {status}: unavailable); such profiles are dropped, not retried" in err
    assert f"0 profile requests; {requests} dropped ({requests} refused (HTTP {status}))" in err


def test_an_unreachable_backend_ends_in_the_drain_time(server):
    """Nothing listening: one line, retries until the end, then what is left dropped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    proc = pusher("-p", server.pid, "--push", f"http://127.0.0.1:{port}", "--push-protocol",
                  "parca", "--push-every", "0.5", "-s", "1.2")  # fmt: skip
    code, err = ended(proc)
    assert code == 1, err
    assert err.count("unreachable") == 2, err
    assert re.search(r"pushed 0 profile requests; \d+ dropped \(.*1 unreachable at the end", err)


@pytest.mark.parametrize(
    ("backend", "status"), [("closed", 0), ("closed", 3), ("stalled", 0)]
)  # fmt: skip
def test_run_exits_with_the_programs_status_within_the_end_bound(backend, status, tmp_path):
    """run --push whose backend is a closed port (each connection refused, retried) or one
    that takes the request and never answers: run exits with the program's own status,
    the push it could not make said, at most END_DRAIN_S after the program ended."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        if backend == "stalled":
            listening.listen(8)  # connections are taken in the backlog, none is answered
        else:
            listening.close()  # nothing listens there
        started = time.monotonic()
        proc = pusher(
            "run", "-o", tmp_path / "s_", "--push", f"http://127.0.0.1:{port}",
            "--push-protocol", "pyroscope", "--", "sh", "-c", f"exit {status}",
        )  # fmt: skip
        code, err = ended(proc)
        took = time.monotonic() - started
    assert code == status, err
    kind = "unreachable at the end" if backend == "closed" else "in flight at the end"
    assert re.search(rf"pushed 0 profile requests; 1 dropped \(1 {kind}\)", err), err
    # the CLI's start and the program's run, then at most the end's bound
    assert took <= END_DRAIN_S + 3, (took, err)


KEEPER_STEPS = """
import os
import sys
import time

def keep_buffers(kept):
    kept.append(bytearray(1 << 20))

kept = []
while not os.path.exists(sys.argv[1]):
    keep_buffers(kept)
    time.sleep(0.05)
"""


@pytest.mark.parametrize("launcher", ["pyenv shim", "script that execs"])
def test_a_program_started_through_exec_is_pushed_every_period(launcher, tmp_path):
    """run --push of a Python program that a wrapper execs (pyenv's python3 shim, a shell
    script): its periods are pushed as they come, not only at its end, each naming the
    program's own function; the wrapper's window, which went with its image, is not."""
    if launcher == "pyenv shim":
        shim = shutil.which("python3")
        if shim is None or "/shims/" not in shim:
            pytest.skip("no pyenv shim for python3 on PATH")
        command = [shim]
    else:
        script = tmp_path / "launch.sh"
        script.write_text(f'#!/bin/sh\nsleep 0.2\nexec {sys.executable} "$@"\n')
        script.chmod(0o755)
        command = [str(script)]
    program = tmp_path / "steps.py"
    program.write_text(KEEPER_STEPS)
    stop = tmp_path / "stop"
    with Backend() as backend:
        proc = pusher(
            "run", "-o", tmp_path / "e_", "--push", backend.url, "--push-protocol", "pyroscope",
            "--push-every", "0.5", "--", *command, program, stop,
        )  # fmt: skip

        def of_the_program() -> list:
            return [p for p in backend.pushes if p.labels["service_name"] == "steps"]

        def keeps(push) -> bool:
            return push.profile.by_function("inuse_space").get("keep_buffers", 0) > 0

        # The periods before the program's first line (the shim, the interpreter's
        # start-up) cannot name it; every period from its first keep_buffers on must.
        wait_for(
            lambda: sum(map(keeps, of_the_program())) >= 4, 60, "four pushes naming the program"
        )
        stop.touch()
        code, err = ended(proc)
    assert code == 0, err
    python = of_the_program()
    first = next(i for i, push in enumerate(python) if keeps(push))
    assert all(keeps(push) for push in python[first:]), err
    assert len(python) - first >= 5, err  # four while it ran, then its file at the end


TWO_WINDOWS = """
import os
import sys
import time

from mem_profiler import api

def first_window(kept):
    kept.append(bytearray(256 << 10))

def second_window(kept):
    kept.append(bytearray(64 << 10))

kept = []
for path, allocate in ((sys.argv[1], first_window), (sys.argv[2], second_window)):
    while not os.path.exists(path):
        allocate(kept)
        time.sleep(0.01)
    if allocate is first_window:
        api.stop()
        api.start(rate=1)
"""


def test_the_periods_of_each_window_add_up_to_it_and_a_new_one_starts_afresh(tmp_path):
    """run --push every 0.5 s of a Python program at -c 1 that allocates all along, closes
    its window and opens another: the pushes go on into the new window, whose figures
    start afresh (nothing of the first window's function in them), and over its periods,
    each a snapshot of what changed since the last, their allocated bytes add up to the
    window's file at the end exactly (at -c 1 every figure is whole)."""
    script, first, second = tmp_path / "windows.py", tmp_path / "first", tmp_path / "second"
    script.write_text(TWO_WINDOWS)
    with Backend() as backend:
        proc = pusher(
            "run", "-c", "1", "-o", tmp_path / "w_", "--push", backend.url,
            "--push-protocol", "pyroscope", "--push-every", "0.5", "--",
            sys.executable, script, first, second,
        )  # fmt: skip

        def functions(push) -> set[str]:
            return set(push.profile.by_function("alloc_space")) | set(
                push.profile.by_function("inuse_space")
            )

        wait_for(lambda: len(backend.pushes) >= 3, 60, "three pushes of the first window")
        first.touch()
        wait_for(
            lambda: sum("second_window" in functions(p) for p in backend.pushes) >= 10,
            60,
            "ten pushes of the second window",
        )
        second.touch()
        code, err = ended(proc)
    assert code == 0, err
    files = sorted(Path(p) for p in re.findall(r"wrote (\S+\.heap)", err))
    assert len(files) == 2, err  # the first window's, written as it closed, and the second's
    second_file = read_heap(files[1])
    start = second_file.window_ns[0]
    assert start is not None
    pushes = [p for p in backend.pushes if p.profile.time_nanos >= start]
    assert len(pushes) >= 10
    for push in pushes:
        assert "first_window" not in functions(push)
    assert "second_window" in functions(pushes[-1])
    assert second_file.estimates is not None
    window_total = int(second_file.estimates[:, 3].sum())  # allocated bytes, exact at -c 1
    assert sum(p.profile.total("alloc_space") for p in pushes) == window_total
    in_use = int(second_file.estimates[:, 1].sum())
    assert pushes[-1].profile.total("inuse_space") == in_use


CLOSES_AND_REOPENS = """
import os
import sys
import time

from mem_profiler import api

kept = []

def allocate_until(path):
    while not os.path.exists(path):
        kept.append(bytearray(1000))
        time.sleep(0.01)

api.start(rate=1)
print("open", flush=True)
allocate_until(sys.argv[1])
api.stop()
print("closed", flush=True)
allocate_until(sys.argv[2])
api.start(rate=1)
print("reopened", flush=True)
allocate_until(sys.argv[3])
"""


def test_a_window_closed_and_reopened_while_a_snapshot_is_asked_is_followed(tmp_path, monkeypatch):
    """The program closes its window just before a view asks for a snapshot and opens
    another before the view asks why it was refused: the view says the window was
    reopened (its reader goes on in the new one), not that the process refused."""
    script = tmp_path / "reopens.py"
    script.write_text(CLOSES_AND_REOPENS)
    close, reopen, end = (tmp_path / name for name in ("close", "reopen", "end"))
    proc = subprocess.Popen(
        [sys.executable, script, close, reopen, end],
        env={**os.environ, "LD_PRELOAD": str(library_path())},
        stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    stdout = proc.stdout
    assert stdout is not None
    try:
        assert stdout.readline() == "open\n"
        with LiveView(proc.pid, CaptureSettings(rate=1), 5.0, "mem_profiler", opens=False) as view:
            view.snapshot()
            close.touch()
            assert stdout.readline() == "closed\n"
            request = ControlBlock.request

            def reopened_after_refusal(block, command, *args, **kwargs):
                try:
                    return request(block, command, *args, **kwargs)
                except ControlError:
                    if command == CMD_SNAPSHOT:
                        reopen.touch()
                        assert stdout.readline() == "reopened\n"
                    raise

            monkeypatch.setattr(ControlBlock, "request", reopened_after_refusal)
            with pytest.raises(WindowGone) as gone:
                view.snapshot()
            assert gone.value.reopened
    finally:
        end.touch()
        assert proc.wait(timeout=60) == 0


def test_a_profile_over_pyroscopes_limits_is_fitted_to_them(build_fixture, tmp_path):
    """20,000 stacks at -c 1, over Pyroscope's 16,000 samples: the push keeps the largest
    15,999 and sums the rest into one, the total exactly the fixture's, and `go tool
    pprof` reads it with that total."""
    exe = build_fixture("distinct_stacks")
    with Backend() as backend:
        proc = pusher("run", "-c", "1", "-o", tmp_path / "d_", "--push", backend.url,
                      "--push-protocol", "pyroscope", "--", exe, "20000")  # fmt: skip
        code, err = ended(proc)
    assert code == 0, err
    assert not backend.refused, backend.refused
    (push,) = backend.pushes
    assert len(push.profile.samples) == 16000
    assert push.profile.total("inuse_space") == 20000 * 64
    left_out = push.profile.by_function("inuse_space")[LEFT_OUT]
    assert left_out == (20000 - 15999) * 64
    pb = tmp_path / "pushed.pb.gz"
    pb.write_bytes(push.raw)
    total, _ = go_pprof_top(pb, tmp_path)
    assert total == pytest.approx(20000 * 64, rel=0.005)  # pprof prints kB to 2 decimals


def test_tls_trusts_the_systems_authorities_and_nothing_else(server, tmp_path):
    """HTTPS with a certificate no authority of the system signed: refused, said once,
    not retried; the same server trusted through OpenSSL's SSL_CERT_FILE: taken."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=backend", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    with Backend(tls=(cert, key)) as backend:
        args = ("-p", server.pid, "--push", backend.url, "--push-protocol", "otlp",
                "--push-every", "0.5", "-s", "1.2")  # fmt: skip
        code, err = ended(pusher(*args))
        assert code == 1 and not backend.otlp, err
        assert err.count("certificate is not trusted (self-signed certificate)") == 1, err
        assert re.search(
            r"pushed 0 profile requests; (\d+) dropped \(\1 untrusted certificate\)", err
        )
        env = dict(os.environ, SSL_CERT_FILE=str(cert))
        trusted = subprocess.run(
            [MEM_PROFILER, *map(str, args)], env=env, capture_output=True, text=True, timeout=60
        )
        assert trusted.returncode == 0, trusted.stderr
        assert backend.otlp


KEEPER = """
import os
import sys
import time

def keep_buffers():
    kept = []
    for _ in range(32):
        kept.append(bytearray(1 << 20))
    return kept

kept = keep_buffers()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
"""


def test_a_python_program_is_pushed_with_its_functions(tmp_path):
    """run --push of a CPython script: its service is the script's name and its Python
    function holds the 32 MiB it keeps, in every push."""
    script = tmp_path / "keeper.py"
    script.write_text(KEEPER)
    stop = tmp_path / "stop"
    with Backend() as backend:
        proc = pusher(
            "run", "-o", tmp_path / "k_", "--push", backend.url, "--push-protocol",
            "pyroscope", "--push-every", "1", "--", sys.executable, script, stop,
        )  # fmt: skip
        wait_for(lambda: len(backend.pushes) >= 2, 60, "two pushes")
        stop.touch()
        code, err = ended(proc)
    assert code == 0, err
    assert len(backend.pushes) >= 3, err
    for push in backend.pushes:
        assert push.labels["service_name"] == "keeper"
        kept = push.profile.by_function("inuse_space")["keep_buffers"]
        assert_estimate(kept, 32 * (MiB + 1), relative_sd(32, MiB, 1024), 0.02)


def test_device_heaps_are_pushed_beside_the_host_heap(standin_dir, tmp_path):
    """run --push of a CUDA program (the stand-in runtime, no GPU) at --device-rate 1: a
    series per heap, the cuda one holding each site's live bytes as the fixture keeps
    them (tests/standins/truth.py)."""
    exe = build_device_fixture("device_cuda", standin_dir)
    with Backend() as backend:
        proc = subprocess.Popen(
            [MEM_PROFILER, "run", "--device-rate", "1", "-o", str(tmp_path / "c_"), "--push",
             backend.url, "--push-protocol", "pyroscope", "--", str(exe), "local"],
            env=standin_env(standin_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        code, err = ended(proc)
    assert code == 0, err
    by_heap = {p.labels["heap"]: p.profile for p in backend.pushes}
    assert {"host", "cuda", "cuda_host"} <= set(by_heap), err
    for heap in ("cuda", "cuda_host"):
        sites = [s for s in truth.SITES["device_cuda"] if s["heap"] == heap]
        pushed = by_heap[heap]
        assert {s["site"]: pushed.cumulative("inuse_space", s["site"]) for s in sites} == {
            s["site"]: s["live_bytes"] for s in sites
        }
        assert pushed.total("inuse_space") == sum(s["live_bytes"] for s in sites)
