"""The costs of the doors into a running process, printed after the overhead tables:
attaching, the controller's round trip, the command line's start-up beside its floor,
`mem_profiler list` among many processes, and a refresh of `mem_profiler top`."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench_setup import MEM_PROFILER, build_program, sampler_env


@contextlib.contextmanager
def idle_targets(out: Path, count: int) -> Iterator[list[subprocess.Popen]]:
    """`count` idle preloaded processes, each with its control block up; killed after."""
    from mem_profiler.control.control_block import segment_path

    targets = [subprocess.Popen(["sleep", "60"], env=sampler_env(out)) for _ in range(count)]
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            os.path.exists(segment_path(t.pid)) for t in targets
        ):
            time.sleep(0.01)
        yield targets
    finally:
        for t in targets:
            t.kill()
            t.wait()


def control_round_trip(out: Path, rounds: int = 20) -> list[float]:
    """Seconds from a START request to the answer of the STOP that closes the window
    (the dump written), against an idle preloaded process."""
    from mem_profiler.control.control_block import CMD_STOP, ControlBlock
    from mem_profiler.control.settings import CaptureSettings

    window = CaptureSettings(rate=1024, prefix=f"{out}/rt_")

    with idle_targets(out, 1) as (target,), ControlBlock.open(target.pid) as block:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            block.start(window, deadline_ns=0)  # 0: no deadline
            block.request(CMD_STOP)
            times.append(time.perf_counter() - start)
        return times


def list_times(out: Path, processes: int = 50, rounds: int = 5) -> list[float]:
    """Seconds `mem_profiler list` takes with `processes` idle preloaded processes to
    list (each found: tests/bindings/test_control.py)."""
    with idle_targets(out, processes):
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run([str(MEM_PROFILER), "list"], check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
        return times


def start_up_times(out: Path, rounds: int = 25) -> dict[str, list[float]]:
    """Seconds `mem_profiler run -- /bin/true` takes, beside its floor: the interpreter
    alone and the interpreter importing click (every command line's first import),
    interleaved; with the bytecode cached, as an installed package has it."""
    python = Path(sys.executable)
    commands = {
        "python -c pass": [str(python), "-c", "pass"],
        "python -c 'import click'": [str(python), "-c", "import click"],
        "mem_profiler run -- /bin/true": [
            str(MEM_PROFILER), "run", "-o", str(out / "start_up_"), "--", "/bin/true",
        ],
    }  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds + 1):  # the first round writes the bytecode caches
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
            times[name].append(time.perf_counter() - start)
    for path in out.glob("start_up_*"):
        path.unlink()
    return {name: spent[1:] for name, spent in times.items()}


def top_refresh(out: Path, stacks: int = 100_000, rounds: int = 10) -> dict[str, float]:
    """What a refresh of `mem_profiler top` costs a target with `stacks` distinct stacks
    (bench/many_stacks.c, all of them live, every allocation sampled), in medians of ms:
    the target's CPU time per snapshot (its control thread's, which answers the request),
    and top's own time to take, read and count a snapshot once every stack was named (the
    first refresh names them all: `first`)."""
    from mem_profiler.control.settings import CaptureSettings
    from mem_profiler.live_view import LiveView
    from mem_profiler.top.stacks import LiveStacks

    exe = build_program(out, "many_stacks", "-O0")
    target = subprocess.Popen(
        [str(exe), str(stacks)], stdout=subprocess.PIPE, text=True, env=sampler_env(out, 1)
    )
    assert target.stdout is not None
    try:
        assert target.stdout.readline() == "ready\n"
        control = next(
            task.parent
            for task in Path(f"/proc/{target.pid}/task").glob("*/comm")
            if task.read_text().strip() == "memprof-ctl"
        )

        def control_cpu() -> float:  # utime + stime, in seconds
            fields = (control / "stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        with LiveView(target.pid, CaptureSettings(rate=1), 1.0) as view:
            names = LiveStacks(target.pid)
            start = time.perf_counter()
            first = view.snapshot()
            names.update(first.window, first.time_ns)
            first_s = time.perf_counter() - start
            cpu, own = [], []
            for _ in range(rounds):
                cpu_before, start = control_cpu(), time.perf_counter()
                snapshot = view.snapshot()
                cpu.append(control_cpu() - cpu_before)
                names.update(snapshot.window, snapshot.time_ns)
                own.append(time.perf_counter() - start)
        return {
            "cpu": statistics.median(cpu) * 1e3,
            "own": statistics.median(own) * 1e3,
            "first": first_s * 1e3,
        }
    finally:
        target.kill()
        target.wait()


def print_times(what: str, seconds: list[float], runs: str, decimals: int = 0) -> None:
    """A line of the median and the most of `seconds`, in ms."""
    ms = [t * 1e3 for t in seconds]
    print(
        f"\n{what}: median {statistics.median(ms):.{decimals}f} ms, "
        f"max {max(ms):.{decimals}f} ms over {len(ms)} {runs}"
    )


def control_costs(out: Path, attach_times: list[float]) -> None:
    """Attaching (timed in the churn's attached rows), the controller's round trip,
    start-up, list, top."""
    if attach_times:
        print_times(
            "attach (ptrace injection until the control block is up)", attach_times, "attaches"
        )
    print_times("controller start/stop round trip", control_round_trip(out), "windows", 1)
    start_up = start_up_times(out)
    print(
        "\nstart-up, median (min) of "
        f"{len(next(iter(start_up.values())))} interleaved runs: "
        + ", ".join(
            f"{name} {statistics.median(spent) * 1e3:.0f} ms ({min(spent) * 1e3:.0f})"
            for name, spent in start_up.items()
        )
    )
    print_times("mem_profiler list of 50 preloaded processes", list_times(out), "runs")
    top = top_refresh(out)
    print(
        f"\nmem_profiler top, a refresh at 100,000 stacks: {top['cpu']:.0f} ms of the "
        f"target's CPU (median); top itself {top['own']:.0f} ms, "
        f"{top['first'] / 1e3:.1f} s for the first (every stack named)"
    )
