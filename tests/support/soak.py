"""The soak: bench/churn.c's threads allocating flat out under `mem_profiler run`, a
dump taken from outside every INTERVAL seconds, for minutes (`make soak`) or seconds
(tests/sampler/test_soak.py). At each dump the target's resident set, descriptors and
threads are read from /proc; at its end, the bytes its exit profile estimates are set
against the bytes the program counted itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from mem_profiler.parser.read.heap_file import read_heap
from support.paths import MEM_PROFILER, ROOT

CHURN = ROOT / "bench" / "churn.c"
ALLOC_BYTES = 3  # the estimates' column of allocated bytes (HeapProfile.estimates)


@dataclass
class Sample:
    """The target at one dump."""

    at_s: float
    rss_kib: int
    fds: int
    threads: int


@dataclass
class Soak:
    seconds: int
    threads: int
    exit_code: int
    allocated: int  # bytes, the program's own count
    estimated: float  # bytes allocated, as its exit profile estimates them
    dumps: int
    failed_dumps: list[str] = field(default_factory=list)  # the controller's sentences
    samples: list[Sample] = field(default_factory=list)


def build_churn(out: Path) -> Path:
    exe = out / "churn"
    subprocess.run(["gcc", "-O2", "-g", "-pthread", "-o", str(exe), str(CHURN)], check=True)
    return exe


def plain_rss_kib(exe: Path, threads: int, seconds: int, interval: float) -> int:
    """The workload's highest resident set without the sampler, read as the soak reads
    the target's."""
    env = dict(os.environ, CHURN_SECONDS=str(seconds))
    env.pop("LD_PRELOAD", None)
    plain = subprocess.Popen(
        [exe, str(threads), "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    highest = 0
    while plain.poll() is None:
        time.sleep(interval)
        sample = _sample(plain.pid, 0.0)
        if sample is not None:
            highest = max(highest, sample.rss_kib)
    return highest


def soak(
    exe: Path,
    out: Path,
    seconds: int,
    threads: int,
    interval: float,
    rate: int,
    until_dumps: int | None = None,
) -> Soak:
    """One soak of `seconds`, or ended sooner (SIGTERM) once `until_dumps` dumps were
    written, however long a dump takes on a loaded machine; the dumps' files are removed
    as they come, but the last."""
    env = dict(os.environ, CHURN_SECONDS=str(seconds))
    env.pop("LD_PRELOAD", None)
    run = subprocess.Popen(
        [
            MEM_PROFILER,
            "run",
            "-c",
            str(rate),
            "-o",
            str(out / "soak_"),
            "--",
            exe,
            str(threads),
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = _child_of(run)
    started = time.monotonic()
    samples: list[Sample] = []
    failed: list[str] = []
    kept: list[str] = []
    dumps = 0
    while run.poll() is None:
        time.sleep(interval)
        dumped = subprocess.run(
            [MEM_PROFILER, "dump", "-p", str(target)], capture_output=True, text=True
        )
        sample = _sample(target, time.monotonic() - started)
        if dumped.returncode != 0:
            # not the target's end overtaking the request: its exit closes the window
            # before the process is gone, which then follows
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                failed.append(dumped.stderr.strip())
            continue
        dumps += 1
        for old in kept:  # each dump holds everything since the window opened
            Path(old).unlink(missing_ok=True)
        kept = dumped.stdout.split()
        # the workload's own run: in its last interval its threads may have ended, the
        # process writing its exit profile with its main thread alone
        if sample is not None and (until_dumps or sample.at_s + interval <= seconds):
            samples.append(sample)
        if dumps == until_dumps:
            os.kill(target, signal.SIGTERM)
            break
    _, err = run.communicate()
    allocated = next(
        int(line.split()[1]) for line in err.splitlines() if line.startswith("allocated ")
    )
    # the last dump's files and the exit profile, which is numbered after them
    heap = max(
        line.split("wrote ", 1)[1] for line in err.splitlines() if "mem_profiler: wrote " in line
    )
    profile = read_heap(heap)
    assert profile.estimates is not None  # the sampler writes them
    return Soak(
        seconds,
        threads,
        run.returncode,
        allocated,
        float(profile.estimates[:, ALLOC_BYTES].sum()),
        dumps,
        failed,
        samples,
    )


def _child_of(run: subprocess.Popen) -> int:
    """The pid of the program `mem_profiler run` started."""
    children = Path(f"/proc/{run.pid}/task/{run.pid}/children")
    for _ in range(500):
        pids = children.read_text().split()
        if pids:
            return int(pids[0])
        time.sleep(0.01)
    raise AssertionError("mem_profiler run started no program")


def _sample(pid: int, at_s: float) -> Sample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None  # it ended meanwhile
    rss = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")]
    return Sample(at_s, rss[0], fds, threads) if rss else None  # none: a zombie
