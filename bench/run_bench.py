"""`make bench`: sampler overhead on the churn workload, as wall-time ratios against
the same workload without the sampler, measured in one run; peers where installed."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "build" / "libmemprof.so"
JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


def build_churn(out: Path) -> Path:
    exe = out / "churn"
    subprocess.run(["gcc", "-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o", str(exe),
                    str(ROOT / "bench" / "churn.c")], check=True)
    return exe


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def sampler_env(rate: int | None, unwind: str = "libunwind", out: Path | None = None) -> dict:
    env = dict(os.environ, LD_PRELOAD=str(LIB))
    if rate is not None:
        env.update(MEMPROF_CAPTURE="1", MEMPROF_RATE=str(rate), MEMPROF_UNWIND=unwind,
                   MEMPROF_PREFIX=f"{out}/bench_")
    return env


def control_round_trip(out: Path, rounds: int = 20) -> list[float]:
    """Seconds from a START request to the answer of the STOP that closes the window
    (the dump written), against an idle preloaded process."""
    from mem_profiler.control_block import CMD_START, CMD_STOP, ControlBlock, segment_path

    target = subprocess.Popen(["sleep", "60"], env=sampler_env(None))
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(segment_path(target.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        times = []
        with ControlBlock.open(target.pid) as block:
            for _ in range(rounds):
                start = time.perf_counter()
                block.request(CMD_START, rate=1024, depth=64, prefix=f"{out}/rt_")
                block.request(CMD_STOP)
                times.append(time.perf_counter() - start)
        return times
    finally:
        target.kill()
        target.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="runs per row; the median is shown")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        exe = build_churn(out)
        argv = [str(exe), str(args.threads), str(args.pairs)]
        base_env = dict(os.environ)
        rows: list[tuple[str, dict | None, list[str] | None]] = [
            ("glibc, no sampler", base_env, None),
            ("sampler loaded, idle", sampler_env(None), None),
            ("sampler -c 524288", sampler_env(524288, out=out), None),
            ("sampler -c 65536", sampler_env(65536, out=out), None),
            ("sampler -c 1024", sampler_env(1024, out=out), None),
            ("sampler -c 1024 --unwind fp", sampler_env(1024, "fp", out), None),
        ]
        if JEMALLOC.is_file():
            je = dict(base_env, LD_PRELOAD=str(JEMALLOC))
            rows += [
                ("jemalloc, no profiling", je, None),
                ("jemalloc prof lg_prof_sample:19",
                 dict(je, MALLOC_CONF=f"prof:true,lg_prof_sample:19,prof_prefix:{out}/je"), None),
                ("jemalloc prof lg_prof_sample:10",
                 dict(je, MALLOC_CONF=f"prof:true,lg_prof_sample:10,prof_prefix:{out}/je"), None),
            ]
        if shutil.which("heaptrack"):
            rows.append(("heaptrack (full tracing)", base_env,
                         ["heaptrack", "-o", str(out / "ht"), *argv]))

        print(f"churn: {args.threads} threads x {args.pairs:,} malloc/free pairs, sizes 16-4096; "
              f"median of {args.repeat} rounds, each round running every row once\n")
        # Rounds interleave the rows so that a slow spell of the machine hits them all.
        times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
        for _ in range(args.repeat):
            for name, env, custom in rows:
                times[name].append(timed(custom or argv, env, out))
        print(f"{'configuration':36s} {'wall s':>8s} {'ratio':>7s}")
        baseline = statistics.median(times[rows[0][0]])
        for name, _, _ in rows:
            median = statistics.median(times[name])
            print(f"{name:36s} {median:8.3f} {median / baseline:7.2f}")

        trips = [t * 1e3 for t in control_round_trip(out)]
        print(f"\ncontroller start/stop round trip: median {statistics.median(trips):.1f} ms, "
              f"max {max(trips):.1f} ms over {len(trips)} windows")


if __name__ == "__main__":
    main()
