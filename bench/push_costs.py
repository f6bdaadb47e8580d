"""The push groups of `make bench`: what pushing costs the target (its allocation rate
with pushes against the same run without, a backend down for a while then back) and
the pusher (its peak RSS, its CPU), and the agent's own RSS and CPU over minutes with
three processes to push; and the fleet group, the same on a PyTorch training run and a
program of 2,000,000 stacks, per period, beside another version's mem_profiler. The
backend is a sink of our own: it takes each request and answers 200, or refuses
connections while "down"."""

from __future__ import annotations

import glob
import http.server
import math
import os
import re
import select
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class Sink:
    """An HTTP server that takes every POST (200) and counts them; `down()` closes its
    socket (connections refused) until `up()`."""

    def __init__(self) -> None:
        self.requests = 0
        self.times: list[float] = []  # when each was taken (time.monotonic)
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.times.append(time.monotonic())
                sink.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._handler = Handler
        self.port = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self._server.allow_reuse_address = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    found = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(found[1]) if found else 0


def churn_under_run(
    mem_profiler: Path, churn: Path, out: Path, seconds: int, push: list[str], outage: float = 0
) -> dict[str, float]:
    """`mem_profiler run [push] -- churn 1 thread for `seconds`: the pairs it allocated per
    second, and the run process's peak RSS and CPU (the pusher's, the target's are its
    child's). With `outage`, the sink is down for that many seconds from the start."""
    sink = Sink()
    args = [a.replace("SINK", sink.url) for a in push]
    env = dict(os.environ, CHURN_SECONDS=str(seconds))
    if outage:
        sink.down()
    run = subprocess.Popen(
        [str(mem_profiler), "run", "-o", str(out / "push_"), *args, "--", str(churn), "1", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = cpu = 0.0
    started = time.monotonic()
    while run.poll() is None:
        try:
            peak = max(peak, peak_rss_kib(run.pid))
            cpu = cpu_seconds(run.pid)
        except (FileNotFoundError, ProcessLookupError):
            break
        if outage and time.monotonic() - started > outage:
            sink.up()
            outage = 0
        time.sleep(0.2)
    err = run.communicate()[1]
    sink.down()
    for f in out.glob("push_*"):
        f.unlink()
    m = re.search(r"allocated (\d+)", err)
    assert m is not None, err
    allocated = int(m[1])
    dropped = re.search(r"(\d+) dropped", err)
    return {
        "rate": allocated / seconds,
        "peak_kib": peak,
        "cpu": cpu,
        "requests": sink.requests,
        "dropped": int(dropped[1]) if dropped else 0,
        "resumed": bool(re.search(r"pushes resumed", err)),
    }


def push_group(mem_profiler: Path, churn: Path, out: Path, seconds: int, outage: int) -> None:
    """The target's allocation rate with pushes every second against the same run without,
    interleaved; then a run whose backend is down for `outage` s of `seconds` + outage."""
    modes = {
        "run, no push": [],
        "run --push every 1 s, backend up": [
            "--push",
            "SINK",
            "--push-protocol",
            "pyroscope",
            "--push-every",
            "1",
        ],  # fmt: skip
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
    for i in range(3):
        for name in list(modes)[:: 1 if i % 2 == 0 else -1]:
            results[name].append(churn_under_run(mem_profiler, churn, out, seconds, modes[name]))
    base = sorted(r["rate"] for r in results["run, no push"])[1]
    print(f"\n{'row':<42} {'alloc MB/s':>10} {'ratio':>6} {'run RSS':>9} {'run CPU':>8} pushes")
    for name, runs in results.items():
        mid = sorted(runs, key=lambda r: r["rate"])[1]
        print(
            f"{name:<42} {mid['rate'] / 1e6:>10,.0f} {mid['rate'] / base:>6.3f} "
            f"{mid['peak_kib'] / 1024:>7.1f} M {mid['cpu']:>7.2f}s {mid['requests']:>6}"
        )
    long = seconds + outage
    push = ["--push", "SINK", "--push-protocol", "pyroscope", "--push-every", "0.5"]
    plain = churn_under_run(mem_profiler, churn, out, long, [])
    down = churn_under_run(mem_profiler, churn, out, long, push, outage=outage)
    print(
        f"\nbackend down for {outage} s of a {long} s run, pushing every 0.5 s: the target "
        f"allocated at {down['rate'] / plain['rate']:.3f} x the rate of a run without push; "
        f"the pusher's peak RSS {down['peak_kib'] / 1024:.1f} MiB, CPU {down['cpu']:.1f} s; "
        f"{down['requests']} requests taken after, {down['dropped']} dropped (queue bound), "
        f"resumed: {'yes' if down['resumed'] else 'no'}"
    )


def agent_group(
    mem_profiler: Path, targets: list[list[str]], env: dict[str, str], seconds: int
) -> None:
    """The agent pushing three preloaded processes every 15 s (its default) for
    `seconds`: its CPU and RSS."""
    sink = Sink()
    procs = [subprocess.Popen(t, env=env, stdout=subprocess.DEVNULL) for t in targets]
    agent = subprocess.Popen(
        [str(mem_profiler), "agent", "--push", sink.url, "--push-protocol", "pyroscope"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(seconds)  # the measurement's length, not a wait for a condition
        cpu, peak = cpu_seconds(agent.pid), peak_rss_kib(agent.pid)
        status = Path(f"/proc/{agent.pid}/status").read_text()
        m = re.search(r"VmRSS:\s+(\d+)", status)
        assert m is not None, status
        rss = int(m[1])
    finally:
        agent.terminate()
        agent.communicate(timeout=60)
        for p in procs:
            p.kill()
            p.wait()
        sink.down()
    print(
        f"\nagent, 3 processes pushed every 15 s for {seconds / 60:.0f} min: CPU {cpu:.1f} s "
        f"({cpu / seconds:.2%} of a core), RSS {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} "
        f"MiB), {sink.requests} requests"
    )


def written_bytes(pid: int) -> int:
    """What the process wrote (its write calls, /proc/<pid>/io's wchar): the snapshots
    its control thread writes for a pusher."""
    found = re.search(r"wchar:\s+(\d+)", Path(f"/proc/{pid}/io").read_text())
    return int(found[1]) if found else 0


@dataclass
class Followed:
    """One pushed run of a fleet row: the pusher's CPU and the target's writes as each
    request reached the sink, the pusher's peak RSS, the run's wall time."""

    wall: float = 0.0
    peak_kib: int = 0
    at_request: list[tuple[float, int]] = field(default_factory=list)  # (pusher CPU, writes)
    ready_cpu: float = 0.0  # the pusher's CPU when the target was ready (2M stacks made)

    def periods(self) -> tuple[float, float, float]:
        """The first period's CPU, the median CPU of the periods after it (but the last,
        the program's files at its end) and their median bytes written by the target."""
        cpu = [c for c, _ in self.at_request]
        written = [w for _, w in self.at_request]
        if len(cpu) < 3:
            return (cpu[0] - self.ready_cpu if cpu else math.nan), math.nan, math.nan
        steps = [b - a for a, b in zip(cpu[:-2], cpu[1:-1], strict=True)]
        moved = [b - a for a, b in zip(written[:-2], written[1:-1], strict=True)]
        return cpu[0] - self.ready_cpu, statistics.median(steps), statistics.median(moved)


def follow_pushes(argv: list[str], env: dict[str, str], wait_s: float | None) -> Followed:
    """`argv` (a mem_profiler command whose push URL is SINK) run to its end, or, with
    `wait_s`, for that long once it prints "ready" and then ended with SIGTERM: what it
    cost (Followed). The target is the command's child where it has one (run), else
    the one the command names after -p."""
    sink = Sink()
    started = time.monotonic()
    proc = subprocess.Popen(
        [a.replace("SINK", sink.url) for a in argv], env=env,
        stdout=subprocess.PIPE if wait_s else subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    out = Followed()
    seen = 0
    deadline = None
    while proc.poll() is None:
        try:
            cpu, peak = cpu_seconds(proc.pid), peak_rss_kib(proc.pid)
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            writes = sum(written_bytes(int(c)) for c in children)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            break
        out.peak_kib = max(out.peak_kib, peak)
        while seen < len(sink.times):
            out.at_request.append((cpu, writes))
            seen += 1
        if wait_s and deadline is None and _ready(proc):  # its periods from here on
            out.ready_cpu, deadline = cpu, time.monotonic() + wait_s
            out.at_request.clear()
        if deadline is not None and time.monotonic() > deadline:
            proc.send_signal(signal.SIGTERM)  # run passes it on to the program
            deadline = math.inf
        time.sleep(0.05)
    proc.wait()
    out.wall = time.monotonic() - started
    sink.down()
    return out


def _ready(proc: subprocess.Popen) -> bool:
    """Whether the target printed "ready" (many_stacks, its stacks all made)."""
    assert proc.stdout is not None
    return select.select([proc.stdout], [], [], 0)[0] != [] and "ready" in proc.stdout.readline()


def fleet_group(
    versions: dict[str, Path],
    torch: list[str] | None,
    many_stacks: list[str],
    env_of: Callable[[Path], dict[str, str]],
    every: int = 5,
) -> None:
    """Per period, what the pusher costs and what the target writes for it, of each
    version of mem_profiler (name: its command), interleaved: `run --push` of a PyTorch
    training run (`torch`, long enough for ten periods; its wall time against the same run
    not pushed), `run -c 1 --push` of the 2,000,000-stack program for ten periods once
    its stacks are made, and `agent` over three of the training runs."""
    push = ["--push", "SINK", "--push-protocol", "pyroscope", "--push-every", str(every)]
    rows: list[tuple[str, Followed]] = []
    print(f"\n{'row':<44} {'first':>7} {'period':>7} {'peak RSS':>9} {'target writes':>14} "
          f"{'wall':>7}")  # fmt: skip
    first = next(iter(versions.values()))
    training = [(f"{name}: run --push, PyTorch", exe, push) for name, exe in versions.items()]
    training.append(("not pushed: run, PyTorch", first, []))
    for round_ in range(2 if torch is not None else 0):
        assert torch is not None
        for name, exe, pushing in training[:: 1 if round_ % 2 == 0 else -1]:
            argv = [str(exe), "run", "-c", "1024", "-o", "/dev/shm/fleet_", *pushing, "--", *torch]
            rows.append((name, follow_pushes(argv, env_of(exe), None)))
    for name, exe in versions.items():
        argv = [str(exe), "run", "-c", "1", "-o", "/dev/shm/fleet_", *push, "--", *many_stacks]
        rows.append((f"{name}: run --push, 2M stacks", follow_pushes(
            argv, env_of(exe), 10.5 * every)))  # fmt: skip
    for name, exe in versions.items():
        if torch is not None:
            rows.append((f"{name}: agent, 3 PyTorch runs", agent_over(
                exe, [torch] * 3, env_of(exe), push, 12 * every)))  # fmt: skip
    for name, f in rows:
        cpu, period, moved = f.periods()
        print(f"{name:<44} {cpu:>6.2f}s {period:>6.3f}s {f.peak_kib / 1024:>7.0f} M "
              f"{moved / 1e3:>11,.0f} kB {f.wall:>6.1f}s")  # fmt: skip
    for path in glob.glob("/dev/shm/fleet_*"):
        os.unlink(path)


def agent_over(
    exe: Path, targets: list[list[str]], env: dict[str, str], push: list[str], seconds: float
) -> Followed:
    """`agent` pushing the `targets` (started idle, the sampler preloaded) for `seconds`:
    its CPU at each request, its peak RSS (Followed; the writes are not counted: the
    targets are not its children)."""
    lib = subprocess.run([str(exe), "lib"], capture_output=True, text=True, check=True).stdout
    target_env = dict(env, LD_PRELOAD=lib.strip())
    procs = [subprocess.Popen(t, env=target_env, stdout=subprocess.DEVNULL) for t in targets]
    try:
        sink = Sink()
        agent = subprocess.Popen(
            [str(exe), "agent", *[a.replace("SINK", sink.url) for a in push]], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out, started, seen = Followed(), time.monotonic(), 0
        while time.monotonic() - started < seconds and agent.poll() is None:
            cpu, peak = cpu_seconds(agent.pid), peak_rss_kib(agent.pid)
            out.peak_kib = max(out.peak_kib, peak)
            while seen < len(sink.times):
                out.at_request.append((cpu, 0))
                seen += 1
            time.sleep(0.05)
        agent.send_signal(signal.SIGINT)
        agent.wait(timeout=120)
        out.wall = time.monotonic() - started
        sink.down()
        return out
    finally:
        for p in procs:
            p.kill()
            p.wait()
