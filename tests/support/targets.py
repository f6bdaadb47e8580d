"""Target processes started with the sampler loaded and idle (tests/fixtures/server.c
and the like), and what a capture window of the server holds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from mem_profiler.control.control_block import segment_path
from mem_profiler.control.controller import list_targets
from mem_profiler.parser.read.heap_file import read_heap
from support.paths import LIBMEMPROF, MEM_PROFILER
from support.processes import wait_for
from support.profiling import report
from support.sampling_math import assert_estimate_between, relative_sd, sample_weight

MiB = 1024 * 1024
# server.c's rings: (site, bytes a block, blocks replaced an iteration, blocks in the ring)
SERVER_RINGS = (("site_pages", 4096, 1, 4096), ("site_small", 256, 4, 65536))


class Server:
    """A program that prints "ready <pid>" (twice with "fork": parent and child), started with
    the sampler loaded and idle (or, with preload=False, without it); stop() kills it and
    removes its control blocks. Started as tests/fixtures/server.c, it notes its
    iterations in self.history, and check_window(heap) checks a window of it."""

    def __init__(
        self,
        exe: Path,
        *args: str,
        user: str | None = None,
        sampler_env: dict[str, str] | None = None,
        preload: bool = True,
    ) -> None:
        self.exe = exe
        self.history = ServerHistory(user)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROF_")}
        env.update(sampler_env or {}, SERVER_HISTORY=self.history.prefix)
        env.pop("LD_PRELOAD", None)
        preloaded = [f"LD_PRELOAD={LIBMEMPROF}"] if preload else []
        argv = [str(exe), *args]
        if user:  # runuser itself runs without the sampler: it keeps our pid
            argv = ["runuser", "-u", user, "--", "env", *preloaded, *argv]
        elif preload:
            env["LD_PRELOAD"] = str(LIBMEMPROF)
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.pids: list[int] = []
        for _ in range(2 if "fork" in args else 1):
            self.pids.append(int(self.proc.stdout.readline().split()[1]))
        for pid in self.pids if preload else ():
            wait_for(lambda pid=pid: os.path.exists(segment_path(pid)), what="a control block")
        self.pid = self.pids[0]

    def check_window(self, heap: Path) -> None:
        """A window of the server ends with each ring's blocks allocated in it and live:
        all 16 MiB of each once the window saw the ring turn over (a few tens of ms), as
        many as the server's own count of iterations in it says if it was starved."""
        profile = read_heap(heap)
        assert profile.pid in self.pids
        start, end = (int(profile.meta[f"window_{e}_ns"]) for e in ("start", "end"))
        fewest, most = self.history.iterations(profile.pid, start, end)
        inuse = report(heap, self.exe)
        self.check_rings({site: v[1] for site, v in inuse.items()}, profile.rate, fewest, most)
        # A window may close between one transient block's malloc and its free.
        assert inuse.get("site_transient", (0, 0))[1] <= sample_weight(65536, profile.rate)
        alloc = report(heap, self.exe, "alloc_space")
        # Per iteration: 65536 B transient, 4096 B pages; both sampled with p > 0.98.
        assert alloc["site_transient"][1] / alloc["site_pages"][1] == pytest.approx(16, rel=0.02)

    @staticmethod
    def ring_blocks(fewest: int, most: int) -> dict[str, tuple[int, int]]:
        """The fewest and the most blocks of each ring a window holds in which the server
        did from `fewest` to `most` iterations."""
        return {
            site: (min(fewest * per_iteration, ring), min(most * per_iteration, ring))
            for site, _, per_iteration, ring in SERVER_RINGS
        }

    def check_rings(self, inuse: Mapping[str, float], rate: int, fewest: int, most: int) -> None:
        """The estimated bytes in use of each ring (`inuse` by site) in a window in which
        the server did from `fewest` to `most` iterations: all 16 MiB once it saw the
        ring turn over."""
        blocks = self.ring_blocks(fewest, most)
        for site, size, _, _ in SERVER_RINGS:
            low, high = blocks[site]
            sd = relative_sd(max(low, 1), size, rate)
            # ±5% is the bound a turned-over ring is held to; a starved window's fewer
            # blocks only to 5 sd of theirs
            limit = max(0.05, 5 * sd)
            assert_estimate_between(inuse.get(site, 0.0), low * size, high * size, sd, limit)

    def stop(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        for pid in self.pids:  # killed: no exit handler removed its block (we are root)
            Path(segment_path(pid)).unlink(missing_ok=True)
        shutil.rmtree(self.history.folder, ignore_errors=True)  # stop() may come twice


class ServerHistory:
    """The iterations a server has done, with the time, as it notes them (SERVER_HISTORY
    in tests/fixtures/server.c): a file of records a process, in a folder of its own."""

    RECORD = np.dtype([("realtime_ns", "<u8"), ("iterations", "<u8")])
    EVERY = 256  # iterations a record

    def __init__(self, user: str | None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="server-history-"))
        if user:
            shutil.chown(self.folder, user)
        self.prefix = f"{self.folder}/"

    def iterations(self, pid: int, start_ns: int, end_ns: int) -> tuple[int, int]:
        """The fewest and the most iterations process pid can have done from start_ns to
        end_ns; waits for its first record after end_ns."""
        times, done = self._records(pid, start_ns, end_ns)
        inside = done[(times >= start_ns) & (times <= end_ns)]
        before = done[times < start_ns]
        fewest = int(inside[-1] - inside[0]) if len(inside) else 0
        return fewest, int(done[times > end_ns][0] - (before[-1] if len(before) else 0))

    def fewest_within(self, pid: int, start_ns: int, end_ns: int, length_ns: int) -> int:
        """The fewest iterations process pid can have done in some interval of length_ns
        lying from start_ns to end_ns; waits for its first record after end_ns."""
        times, done = self._records(pid, start_ns, end_ns)
        assert start_ns + length_ns <= end_ns, (start_ns, end_ns, length_ns)
        # the count in [s, s + length] is at least the last record's by s + length less
        # the first record's from s; it is least just after a record
        inside = times[(times >= start_ns) & (times + length_ns <= end_ns)]
        starts = np.r_[start_ns, inside + 1]
        first = done[np.searchsorted(times, starts)]
        last = np.searchsorted(times, starts + length_ns, side="right") - 1
        by_end = np.where(last >= 0, done[np.maximum(last, 0)], 0)
        return int(np.maximum(by_end - first, 0).min())

    def wait_until(self, pid: int, iterations: int) -> None:
        """Waits until pid has noted `iterations` done."""
        wait_for(
            lambda: self.latest(pid) >= iterations,
            what=f"process {pid} to do {iterations} iterations",
        )

    def latest(self, pid: int) -> int:
        """The iterations pid noted last (it notes every EVERY)."""
        return int(np.fromfile(f"{self.prefix}{pid}", self.RECORD)["iterations"].max())

    def _records(self, pid: int, start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(times, iterations) of pid's records, all of them since start_ns, once one was
        noted after end_ns."""
        times, done = wait_for(
            lambda: self._records_to(pid, end_ns), what=f"process {pid} to note an iteration"
        )
        assert done[0] == self.EVERY or times[0] < start_ns, "the server's ring of records wrapped"
        return times, done

    def _records_to(self, pid: int, end_ns: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The records of pid in the order noted, once one was noted after end_ns."""
        records = np.fromfile(f"{self.prefix}{pid}", self.RECORD)
        done = records["iterations"]
        # a record being written, or one a turn of the ring old, is not where its count says
        kept = np.sort(
            records[(done > 0) & (done // self.EVERY % len(records) == np.arange(len(records)))],
            order="iterations",
        )
        if not len(kept) or kept["realtime_ns"][-1] <= end_ns:
            return None
        return kept["realtime_ns"].astype(np.int64), kept["iterations"].astype(np.int64)


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
