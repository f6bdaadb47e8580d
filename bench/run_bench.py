"""`make bench`: sampler overhead on the churn workload and on programs as Debian ships
them (sqlite3, python3), as wall-time and peak-RSS ratios against the same workload without
the sampler, measured in one run, with the size of the files each run wrote; peers where
installed."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from peak_rss import PeakRss

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "build" / "libmemprof.so"
JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
# Debian's python3 with memray installed beside it (`make bench-deps`).
BENCH_PYTHON = ROOT / "build" / "bench-venv" / "bin" / "python"


@dataclass
class Row:
    name: str
    env: dict[str, str]
    argv: list[str] | None = None  # None: the churn workload itself
    baseline: str | None = None  # ratio against this row instead of the first
    attach_rate: int | None = None  # started without the sampler, attached at this rate
    times: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)  # peak RSS, KiB
    capture_bytes: list[int] = field(default_factory=list)  # files written but event logs
    log_bytes: list[int] = field(default_factory=list)  # event logs (.memlog)
    files: list[Path] = field(default_factory=list)  # what the last round wrote


def build_program(out: Path, name: str, optimization: str, *flags: str) -> Path:
    """bench/NAME.c built into out/NAME with gcc, debug information and frame pointers."""
    exe = out / name
    source = ROOT / "bench" / f"{name}.c"
    subprocess.run(
        ["gcc", optimization, "-g", "-fno-omit-frame-pointer", *flags, "-o", str(exe), str(source)],
        check=True,
    )
    return exe


def sampler_env(out: Path, rate: int | None = None, **extra: str) -> dict[str, str]:
    """Preloaded; capturing from the start at `rate` unless rate is None (idle)."""
    env = dict(os.environ, LD_PRELOAD=str(LIB))
    if rate is not None:
        env.update(MEMPROF_CAPTURE="1", MEMPROF_RATE=str(rate), MEMPROF_PREFIX=f"{out}/bench_")
    env.update(extra)
    return env


RUNNER: PeakRss  # set by main: every row's workload runs through it


def run_once(row: Row, argv: list[str], out: Path, keep: bool = False) -> None:
    """One run of the row: its time, peak RSS and the sizes of the files it wrote in
    `out`, which are removed unless `keep` (then they are row.files)."""
    before = set(out.iterdir())
    if row.attach_rate:
        seconds, peak = run_attached(row, argv, out)
    else:
        seconds, peak = RUNNER.run(row.argv or argv, row.env, out)
    row.times.append(seconds)
    row.peaks.append(peak)
    written = sorted(p for p in set(out.iterdir()) - before if p.is_file())
    logs = [p for p in written if p.suffix == ".memlog"]
    row.log_bytes.append(sum(p.stat().st_size for p in logs))
    row.capture_bytes.append(sum(p.stat().st_size for p in written if p not in logs))
    if keep:
        row.files = written
    else:
        for p in written:
            p.unlink()


ATTACH_TIMES: list[float] = []  # seconds from the injection's start to a control block


def run_attached(row: Row, argv: list[str], out: Path) -> tuple[float, int]:
    """The workload's own time, with the sampler attached (ptrace injection, GOT hooks)
    and a window open at row.attach_rate before it starts; and its peak RSS."""
    from mem_profiler.control_block import CMD_START, ControlBlock
    from mem_profiler.controller import attach

    command, env = RUNNER.command(argv, dict(row.env, CHURN_WAIT="1"))
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=out,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        # the workload is the runner's child
        (pid,) = map(int, Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())
        start = time.perf_counter()
        attach(pid)
        ATTACH_TIMES.append(time.perf_counter() - start)
        with ControlBlock.open(pid) as block:
            block.request(CMD_START, rate=row.attach_rate, depth=64, prefix=f"{out}/att_")
        _, err = proc.communicate("go\n", timeout=600)  # the window is dumped at exit
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        return float(err.split()[-1]), RUNNER.peak_kib()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def control_round_trip(out: Path, rounds: int = 20) -> list[float]:
    """Seconds from a START request to the answer of the STOP that closes the window
    (the dump written), against an idle preloaded process."""
    from mem_profiler.control_block import CMD_START, CMD_STOP, ControlBlock, segment_path

    target = subprocess.Popen(["sleep", "60"], env=sampler_env(out))
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


def top_refresh(out: Path, stacks: int = 100_000, rounds: int = 10) -> dict[str, float]:
    """What a refresh of `mem_profiler top` costs a target with `stacks` distinct stacks
    (bench/many_stacks.c, all of them live, every allocation sampled), in medians of ms:
    the target's CPU time per snapshot (its control thread's, which answers the request),
    and top's own time to take, read and count a snapshot once every stack was named (the
    first refresh names them all: `first`)."""
    from mem_profiler.top.live_view import LiveView
    from mem_profiler.top.stacks import LiveStacks

    exe = build_program(out, "many_stacks", "-O0")
    target = subprocess.Popen(
        [str(exe), str(stacks)], stdout=subprocess.PIPE, text=True, env=sampler_env(out, 1)
    )
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

        with LiveView(target.pid, 1, 64, 1.0) as view:
            names = LiveStacks(f"/proc/{target.pid}/exe")
            start = time.perf_counter()
            first = view.snapshot()
            names.update(first.profiles, first.time_ns)
            first_s = time.perf_counter() - start
            cpu, own = [], []
            for _ in range(rounds):
                cpu_before, start = control_cpu(), time.perf_counter()
                snapshot = view.snapshot()
                cpu.append(control_cpu() - cpu_before)
                names.update(snapshot.profiles, snapshot.time_ns)
                own.append(time.perf_counter() - start)
        return {
            "cpu": statistics.median(cpu) * 1e3,
            "own": statistics.median(own) * 1e3,
            "first": first_s * 1e3,
        }
    finally:
        target.kill()
        target.wait()


def churn_rows(out: Path, argv: list[str]) -> list[Row]:
    rows = [
        Row("glibc, no sampler", dict(os.environ)),
        Row("sampler loaded, idle", sampler_env(out)),
        Row("sampler -c 524288", sampler_env(out, 524288)),
        Row("sampler -c 65536", sampler_env(out, 65536)),
        Row("sampler -c 1024", sampler_env(out, 1024)),
        Row(
            "sampler -c 1024 --unwind libunwind", sampler_env(out, 1024, MEMPROF_UNWIND="libunwind")
        ),
        Row("sampler -c 1024 --unwind fp", sampler_env(out, 1024, MEMPROF_UNWIND="fp")),
        Row(
            "sampler -c 65536 --mode log",
            sampler_env(out, 65536, MEMPROF_MODE="log"),
            baseline="sampler -c 65536",
        ),
        Row(
            "sampler -c 1024 --mode log",
            sampler_env(out, 1024, MEMPROF_MODE="log"),
            baseline="sampler -c 1024",
        ),
        Row("gate, exact mode (-c 1, peak)", sampler_env(out, 1, MEMPROF_TRACK_LIVE="1")),
        Row(
            "attached (-p --attach) -c 65536",
            dict(os.environ),
            attach_rate=65536,
            baseline="sampler -c 65536",
        ),
        Row(
            "attached (-p --attach) -c 1024",
            dict(os.environ),
            attach_rate=1024,
            baseline="sampler -c 1024",
        ),
    ]
    if JEMALLOC.is_file():
        je = dict(os.environ, LD_PRELOAD=str(JEMALLOC))
        rows += [
            Row("jemalloc, no profiling", je),
            Row(
                "jemalloc prof lg_prof_sample:19",
                dict(je, MALLOC_CONF=f"prof:true,lg_prof_sample:19,prof_prefix:{out}/je"),
            ),
            Row(
                "jemalloc prof lg_prof_sample:10",
                dict(je, MALLOC_CONF=f"prof:true,lg_prof_sample:10,prof_prefix:{out}/je"),
            ),
        ]
    if shutil.which("heaptrack"):
        rows.append(
            Row(
                "heaptrack (full tracing)",
                dict(os.environ),
                ["heaptrack", "-o", str(out / "ht"), *argv],
            )
        )
    return rows


SQLITE_SCRIPT = (
    "create table t(a integer, b text, c real); insert into t select value, "
    "hex(randomblob(16)), random() from generate_series(1,300000); "
    "create index i1 on t(b); create index i2 on t(c);"
)
PYTHON_RECORDS = 50_000
OBJECTS_SCRIPT = ROOT / "tests" / "fixtures" / "real_programs" / "objects.py"


def shipped_programs() -> list[tuple[str, str, list[str], dict[str, str]]]:
    """(group, title, argv, environment) of programs as Debian ships them: stripped,
    without frame pointers, their allocations through glibc's malloc."""
    return [
        (
            "sqlite3",
            "Debian's sqlite3: 300,000 rows inserted into a table in memory, two indexes",
            ["sqlite3", ":memory:", SQLITE_SCRIPT],
            {},
        ),
        (
            "python-malloc",
            f"Debian's python3 (PYTHONMALLOC=malloc): {PYTHON_RECORDS:,} records as dicts, "
            "through json and back",
            ["/usr/bin/python3", str(OBJECTS_SCRIPT), str(PYTHON_RECORDS)],
            {"PYTHONMALLOC": "malloc"},
        ),
    ]


def shipped_program_rows(out: Path, argv: list[str], env: dict[str, str]) -> list[Row]:
    """The program alone, under the sampler (default unwinder), jemalloc's profiler (which
    brings jemalloc as the allocator) and heaptrack."""
    plain = dict(os.environ, **env)
    rows = [
        Row("no profiler", plain),
        Row("sampler -c 524288", sampler_env(out, 524288, **env)),
        Row("sampler -c 1024", sampler_env(out, 1024, **env)),
        Row("sampler -c 1 (every allocation)", sampler_env(out, 1, **env)),
    ]
    if JEMALLOC.is_file():
        rows.append(
            Row(
                "jemalloc prof lg_prof_sample:10",
                dict(
                    plain,
                    LD_PRELOAD=str(JEMALLOC),
                    MALLOC_CONF=f"prof:true,lg_prof_sample:10,prof_prefix:{out}/je",
                ),
            )
        )
    if shutil.which("heaptrack"):
        rows.append(
            Row("heaptrack (full tracing)", plain, ["heaptrack", "-o", str(out / "ht"), *argv])
        )
    return rows


def python_rows(out: Path, argv: list[str]) -> list[Row]:
    """A Python program as it runs by default (pymalloc): the sampler beside memray, whose
    full tracing (every allocation, pymalloc's included) is what `-c 1` records."""
    plain = dict(os.environ)
    plain.pop("PYTHONMALLOC", None)
    memray = [str(BENCH_PYTHON), "-m", "memray", "run", "-q", "-f", "-o", str(out / "m.bin")]
    return [
        Row("no profiler", plain),
        Row("sampler -c 1024", sampler_env(out, 1024)),
        Row("sampler -c 1 (every allocation)", sampler_env(out, 1)),
        Row("memray run", plain, [*memray, *argv[1:]]),
        Row(
            "memray run --trace-python-allocators",
            plain,
            [*memray, "--trace-python-allocators", *argv[1:]],
        ),
        Row(
            "memray run --native --trace-python-...",
            plain,
            [*memray, "--native", "--trace-python-allocators", *argv[1:]],
        ),
    ]


def device_rows(out: Path) -> tuple[list[Row], list[str]]:
    """100,000 cudaMalloc/cudaFree pairs through the stand-in runtime (tests/standins)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from standins.build import build_device_fixture, standin_env

    exe = build_device_fixture("device_churn", out / "standins")
    env = standin_env(out / "standins")
    rows = [
        Row("stand-in runtime, no sampler", env),
        Row(
            "sampler --device-rate 1",
            dict(
                sampler_env(out, 1024, MEMPROF_DEVICE_RATE="1"),
                LD_LIBRARY_PATH=env["LD_LIBRARY_PATH"],
            ),
        ),
    ]
    return rows, [str(exe)]


def size(n: float) -> str:
    """n bytes for a table's cell: "-" for none."""
    if not n:
        return "-"
    if n < 2**20:
        return f"{n / 2**10:.0f} KiB"
    return f"{n / 2**20:.1f} MiB" if n < 100 * 2**20 else f"{n / 2**20:.0f} MiB"


def print_table(rows: list[Row]) -> None:
    """Medians: wall time and peak RSS, each with its ratio against the first row's; the
    files the run wrote (event logs apart), the event logs."""
    by_name = {r.name: r for r in rows}
    base = statistics.median(rows[0].times)
    base_rss = statistics.median(rows[0].peaks)
    print(
        f"{'configuration':40s} {'wall s':>8s} {'ratio':>6s} {'RSS MiB':>8s} {'ratio':>6s}"
        f" {'files':>9s} {'log':>9s}  note"
    )
    for row in rows:
        median = statistics.median(row.times)
        rss = statistics.median(row.peaks)
        log = statistics.median(row.log_bytes)
        notes = []
        if row.baseline:
            ref = statistics.median(by_name[row.baseline].times)
            notes.append(f"{median / ref:.2f}x {row.baseline}")
        if log:
            notes.append(f"log {log / median / 2**20:.0f} MiB/s")
        print(
            f"{row.name:40s} {median:8.3f} {median / base:6.2f} {rss / 1024:8.1f}"
            f" {rss / base_rss:6.2f} {size(statistics.median(row.capture_bytes)):>9s}"
            f" {size(log):>9s}  {', '.join(notes)}"
        )


def measure(rows: list[Row], argv: list[str], out: Path, repeat: int) -> None:
    """Rounds interleave the rows so that a slow spell of the machine hits them all."""
    for _ in range(repeat):
        for row in rows:
            run_once(row, argv, out)
    print_table(rows)


GROUPS = ("churn", "sqlite3", "python-malloc", "python", "device", "other")


def group_list(text: str) -> list[str]:
    groups = text.split(",")
    for g in groups:
        if g not in GROUPS:
            raise argparse.ArgumentTypeError(f"no group {g!r}: one of {', '.join(GROUPS)}")
    return groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="runs per row; the median is shown")
    ap.add_argument(
        "--only",
        type=group_list,
        default=list(GROUPS),
        metavar="GROUP,...",
        help=f"run these groups of rows only, of: {', '.join(GROUPS)} (attach, the control "
        "round trip and top)",
    )
    args = ap.parse_args()

    global RUNNER
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        RUNNER = PeakRss(out)
        if "churn" in args.only:
            churn = build_program(out, "churn", "-O2", "-pthread")
            argv = [str(churn), str(args.threads), str(args.pairs)]
            print(
                f"churn: {args.threads} threads x {args.pairs:,} malloc/free pairs, sizes "
                f"16-4096; median of {args.repeat} rounds, each round running every row once\n"
            )
            measure(churn_rows(out, argv), argv, out, args.repeat)

        for group, title, argv, env in shipped_programs():
            if group in args.only:
                print(f"\n{title}\n")
                measure(shipped_program_rows(out, argv, env), argv, out, args.repeat)

        if "python" in args.only:
            argv = [str(BENCH_PYTHON), str(OBJECTS_SCRIPT), str(PYTHON_RECORDS)]
            print(
                f"\nDebian's python3, pymalloc (its default): {PYTHON_RECORDS:,} records as "
                "dicts, through json and back\n"
            )
            measure(python_rows(out, argv), argv, out, args.repeat)

        if "device" in args.only:
            rows, argv = device_rows(out)
            print(
                "\ndevice churn: 100,000 cudaMalloc/cudaFree pairs of 1-4 MiB through the "
                "stand-in runtime (no GPU)\n"
            )
            measure(rows, argv, out, args.repeat)

        if "other" in args.only:
            other_measurements(out)


def other_measurements(out: Path) -> None:
    """Attaching (timed in the churn's attached rows), the controller's round trip, top."""
    if ATTACH_TIMES:
        attach_ms = [t * 1e3 for t in ATTACH_TIMES]
        print(
            f"\nattach (ptrace injection until the control block is up): median "
            f"{statistics.median(attach_ms):.0f} ms, max {max(attach_ms):.0f} ms over "
            f"{len(attach_ms)} attaches"
        )
    trips = [t * 1e3 for t in control_round_trip(out)]
    print(
        f"\ncontroller start/stop round trip: median {statistics.median(trips):.1f} ms, "
        f"max {max(trips):.1f} ms over {len(trips)} windows"
    )
    top = top_refresh(out)
    print(
        f"\nmem_profiler top, a refresh at 100,000 stacks: {top['cpu']:.0f} ms of the "
        f"target's CPU (median); top itself {top['own']:.0f} ms, "
        f"{top['first'] / 1e3:.1f} s for the first (every stack named)"
    )


if __name__ == "__main__":
    main()
