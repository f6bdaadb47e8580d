"""The push group of `make bench`: what pushing costs the target (its allocation rate
with pushes against the same run without, a backend down for a while then back) and
the pusher (its peak RSS, its CPU), and the agent's own RSS and CPU over minutes with
three processes to push. The backend is a sink of our own: it takes each request and
answers 200, or refuses connections while "down"."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import threading
import time
from pathlib import Path


class Sink:
    """An HTTP server that takes every POST (200) and counts them; `down()` closes its
    socket (connections refused) until `up()`."""

    def __init__(self) -> None:
        self.requests = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
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
