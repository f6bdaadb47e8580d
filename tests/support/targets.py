"""Target processes started with the sampler loaded and idle (tests/fixtures/server.c
and the like), and what a capture window of the server holds."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mem_profiler.control_block import segment_path
from mem_profiler.controller import list_targets
from support.paths import LIBMEMPROF, MEM_PROFILER
from support.processes import wait_for
from support.profiling import report
from support.sampling_math import assert_estimate, relative_sd, sample_weight

MiB = 1024 * 1024


class Server:
    """A program that prints "ready <pid>" (twice with "fork": parent and child), started with
    the sampler loaded and idle; stop() kills it and removes its control blocks."""

    def __init__(
        self,
        exe: Path,
        *args: str,
        user: str | None = None,
        sampler_env: dict[str, str] | None = None,
    ) -> None:
        self.exe = exe
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROF_")}
        env.update(sampler_env or {})
        argv = [str(exe), *args]
        if user:  # runuser itself runs without the sampler: it keeps our pid
            argv = ["runuser", "-u", user, "--", "env", f"LD_PRELOAD={LIBMEMPROF}", *argv]
            env.pop("LD_PRELOAD", None)
        else:
            env["LD_PRELOAD"] = str(LIBMEMPROF)
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.pids: list[int] = []
        for _ in range(2 if "fork" in args else 1):
            self.pids.append(int(self.proc.stdout.readline().split()[1]))
        for pid in self.pids:
            wait_for(lambda pid=pid: os.path.exists(segment_path(pid)), what="a control block")
        self.pid = self.pids[0]

    def stop(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        for pid in self.pids:  # killed: no exit handler removed its block (we are root)
            Path(segment_path(pid)).unlink(missing_ok=True)


def check_server_window(heap: Path, exe: Path) -> None:
    """Any window of the server ends with 16 MiB of each ring allocated in it and live."""
    inuse = report(heap, exe)
    assert_estimate(inuse["site_pages"][1], 16 * MiB, relative_sd(4096, 4096, 1024), 0.05)
    assert_estimate(inuse["site_small"][1], 16 * MiB, relative_sd(65536, 256, 1024), 0.05)
    # A window may close between one transient block's malloc and its free.
    assert inuse.get("site_transient", (0, 0))[1] <= sample_weight(65536, 1024)
    alloc = report(heap, exe, "alloc_space")
    # Per iteration: 65536 B transient, 4096 B pages; both sampled with p > 0.98.
    assert alloc["site_transient"][1] / alloc["site_pages"][1] == pytest.approx(16, rel=0.02)


def attach_window(pid: int, *args: str | Path, timeout: float = 30) -> subprocess.Popen:
    """`mem_profiler -p PID --attach ARGS`, started; returned once the window it opens is
    open in the target, which must be within `timeout` s, the controller still running."""
    controller = subprocess.Popen(
        [MEM_PROFILER, "-p", str(pid), "--attach", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while not any(x.pid == pid and x.state.startswith("capturing") for x in list_targets()):
        assert time.monotonic() < deadline and controller.poll() is None, "no window opened"
        time.sleep(0.02)
    return controller
