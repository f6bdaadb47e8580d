"""`make bench`: sampler overhead on the churn workload and on programs as Debian ships
them (sqlite3, python3), as wall-time and peak-RSS ratios against the same workload without
the sampler, measured in one run, with the size of the files each run wrote; peers where
installed."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_setup import LIB, MEM_PROFILER, ROOT, build_program, sampler_env
from control_costs import control_costs
from peak_rss import PeakRss
from push_costs import agent_group, fleet_group, push_group

JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
# Debian's python3 with memray installed beside it (`make bench-deps`).
BENCH_PYTHON = ROOT / "build" / "bench-venv" / "bin" / "python"
# A CPython 3.11 with both PyTorch (CPU) and memray (`make bench-deps`).
TORCH_PYTHON = ROOT / "build" / "bench-torch-venv" / "bin" / "python"
TORCH_SCRIPT = ROOT / "bench" / "torch_train.py"


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
    dropped: int | None = None  # samples dropped, by the last round's .heap files


RUNNER: PeakRss  # set by main: every row's workload runs through it


def file_states(folder: Path) -> dict[Path, tuple[int, int, int]]:
    """The files in `folder`, each with what changes when it is written."""
    states = {}
    for p in folder.iterdir():
        st = p.stat()
        if stat.S_ISREG(st.st_mode):
            states[p] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return states


def run_once(row: Row, argv: list[str], out: Path, keep: bool) -> None:
    """One run of the row: its time, peak RSS and the sizes of the files it wrote in
    `out` (new, or written over), which are removed unless `keep` (then they are
    row.files)."""
    before = file_states(out)
    if row.attach_rate:
        seconds, peak = run_attached(row, argv, out)
    else:
        seconds, peak = RUNNER.run(row.argv or argv, row.env, out)
    row.times.append(seconds)
    row.peaks.append(peak)
    written = sorted(p for p, state in file_states(out).items() if before.get(p) != state)
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
    from mem_profiler.control.control_block import ControlBlock
    from mem_profiler.control.controller import attach
    from mem_profiler.control.settings import CaptureSettings

    assert row.attach_rate is not None
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
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
        # the workload is the runner's child
        (pid,) = map(int, Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())
        start = time.perf_counter()
        attach(pid)
        ATTACH_TIMES.append(time.perf_counter() - start)
        with ControlBlock.open(pid) as block:
            block.start(CaptureSettings(rate=row.attach_rate, prefix=f"{out}/att_"), deadline_ns=0)
        _, err = proc.communicate("go\n", timeout=600)  # the window is dumped at exit
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        return float(err.split()[-1]), RUNNER.peak_kib()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
        Row("gate, exact mode (-c 1, peak)", sampler_env(out, 1)),
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

    def memray(name: str, *options: str) -> list[str]:
        output = str(out / f"{name}.memray")
        return [str(BENCH_PYTHON), "-m", "memray", "run", "-q", "-f", "-o", output, *options]

    return [
        Row("no profiler", plain),
        Row("sampler -c 1024", sampler_env(out, 1024)),
        Row("sampler -c 1 (every allocation)", sampler_env(out, 1)),
        Row("memray run", plain, [*memray("python"), *argv[1:]]),
        Row(
            "memray run --trace-python-allocators",
            plain,
            [*memray("python_pymalloc", "--trace-python-allocators"), *argv[1:]],
        ),
        Row(
            "memray run --native --trace-python-...",
            plain,
            [*memray("python_native", "--native", "--trace-python-allocators"), *argv[1:]],
        ),
    ]


def torch_probe() -> tuple[bool, str]:
    """Whether the PyTorch rows can run; the versions they run, or why not."""
    if not TORCH_PYTHON.is_file():
        return False, f"no {TORCH_PYTHON.relative_to(ROOT)} (make bench-deps makes it)"
    probe = subprocess.run(
        [
            str(TORCH_PYTHON),
            "-c",
            "import platform, memray, torch; print(platform.python_implementation(), "
            "platform.python_version(), 'with torch', torch.__version__, "
            "'and memray', memray.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        return False, f"{TORCH_PYTHON.relative_to(ROOT)} cannot import torch and memray"
    return True, probe.stdout.strip()


def torch_rows(out: Path) -> list[Row]:
    """A PyTorch program: the sampler, preloaded as in the other rows, beside memray,
    which records the allocations that reach malloc with their Python stacks (`run`),
    and their native frames as well (`--native`). The sampler at `--depth 1` keeps
    only the allocating native frame under the Python frames: what the native walk
    costs is the difference to the row above it.  In log mode it also records every
    sample's time, as memray records every allocation."""
    plain = dict(os.environ)
    plain.pop("PYTHONMALLOC", None)
    sampler = sampler_env(out, 1024)
    sampler.pop("PYTHONMALLOC", None)
    python_only = dict(sampler, MEMPROF_DEPTH="1")
    memray = [str(TORCH_PYTHON), "-m", "memray", "run", "-q", "-f"]
    return [
        Row("no profiler", plain),
        Row("sampler -c 1024", sampler),
        Row("sampler -c 1024 --depth 1", python_only),
        Row("sampler -c 1024 --mode log", dict(sampler, MEMPROF_MODE="log")),
        Row("memray run", plain, [*memray, "-o", str(out / "torch.memray"), str(TORCH_SCRIPT)]),
        Row(
            "memray run --native",
            plain,
            [*memray, "--native", "-o", str(out / "torch_native.memray"), str(TORCH_SCRIPT)],
        ),
    ]


def torch_parsers(rows: list[Row], out: Path, rounds: int) -> None:
    """The readers of the PyTorch rows' last files: `mem_parser -t` and `--pprof`, the
    symbol cache empty, on the sampler's, `--timeline` (with `--categories` too) and
    `--events-db` on its event log (their memory with their helper's:
    PeakRss.run_parser), and `memray summary` on memray's, interleaved."""
    by_name = {r.name: r for r in rows}
    (heap,) = (p for p in by_name["sampler -c 1024"].files if p.suffix == ".heap")
    log_files = by_name["sampler -c 1024 --mode log"].files
    (logged,) = (p for p in log_files if p.suffix == ".heap")
    log_bytes = sum(p.stat().st_size for p in log_files if p.suffix == ".memlog")
    (plain,) = by_name["memray run"].files
    (native,) = by_name["memray run --native"].files
    cache = out / "symbols"
    summary = [str(TORCH_PYTHON), "-m", "memray", "summary"]
    readers = [
        Row(
            "mem_parser -t (empty symbol cache)",
            dict(os.environ, MEMPROF_CACHE_DIR=str(cache)),
            ["-f", str(heap), "-t"],
        ),
        Row(
            "mem_parser --pprof (empty symbol cache)",
            dict(os.environ, MEMPROF_CACHE_DIR=str(cache)),
            ["-f", str(heap), "--pprof", str(out / "torch.pb.gz")],
        ),
        Row(
            "mem_parser --timeline, the event log",
            dict(os.environ, MEMPROF_CACHE_DIR=str(cache)),
            ["-f", str(logged), "--timeline", str(out / "torch.svg")],
        ),
        Row(
            "mem_parser --timeline --categories, log",
            dict(os.environ, MEMPROF_CACHE_DIR=str(cache)),
            ["-f", str(logged), "--timeline", str(out / "torch_cat.svg"), "--categories"],
        ),
        Row(
            "mem_parser --events-db, the event log",
            dict(os.environ, MEMPROF_CACHE_DIR=str(cache)),
            ["-f", str(logged), "--events-db", str(out / "torch.db")],
        ),
        Row("memray summary, memray run's file", dict(os.environ), [*summary, str(plain)]),
        Row("memray summary, --native's file", dict(os.environ), [*summary, str(native)]),
    ]
    for i in range(rounds):
        for reader in round_order(readers, i):
            shutil.rmtree(cache, ignore_errors=True)
            run = RUNNER.run_parser if reader in readers[:5] else RUNNER.run
            seconds, peak = run(reader.argv or [], reader.env, out)
            reader.times.append(seconds)
            reader.peaks.append(peak)
    shutil.rmtree(cache, ignore_errors=True)
    print(f"\nthe files' readers, median of {rounds} rounds\n")
    print(f"{'command':40s} {'file':>9s} {'wall s':>8s} {'RSS MiB':>8s}")
    sizes = (
        [heap.stat().st_size] * 2 + [log_bytes] * 3 + [p.stat().st_size for p in (plain, native)]
    )
    for reader, file_bytes in zip(readers, sizes, strict=True):
        print(
            f"{reader.name:40s} {size(file_bytes):>9s}"
            f" {statistics.median(reader.times):8.3f} {statistics.median(reader.peaks) / 1024:8.1f}"
        )


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


def dropped_samples(files: list[Path]) -> int | None:
    """The samples dropped, in all, in the .heap files among `files` (None: there are
    none), read by the parser's reader so that the bench follows the file format."""
    heaps = [p for p in files if p.suffix == ".heap"]
    if not heaps:
        return None
    try:
        from mem_profiler.parser.read.heap_file import read_heap
    except ImportError:  # not installed: the `#` lines of a text file
        return sum(
            int(line.split(b":", 1)[1])
            for p in heaps
            for line in p.read_bytes().splitlines()
            if line.startswith(b"# dropped_samples:")
        )
    return sum(read_heap(p).dropped_samples for p in heaps)


def print_table(rows: list[Row], dropped: bool = False, extra_rss: bool = False) -> None:
    """Medians: wall time and peak RSS, each with its ratio against the first row's (and
    with `extra_rss`, the difference); the files the run wrote (event logs apart), the
    event logs; with `dropped`, the samples dropped."""
    by_name = {r.name: r for r in rows}
    base = statistics.median(rows[0].times)
    base_rss = statistics.median(rows[0].peaks)
    print(
        f"{'configuration':40s} {'wall s':>8s} {'ratio':>6s} {'RSS MiB':>8s} {'ratio':>6s}"
        + (f" {'+RSS MiB':>8s}" if extra_rss else "")
        + f" {'files':>9s} {'log':>9s}"
        + (f" {'dropped':>10s}" if dropped else "")
        + "  note"
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
        drops = "-" if row.dropped is None else f"{row.dropped:,}"
        print(
            f"{row.name:40s} {median:8.3f} {median / base:6.2f} {rss / 1024:8.1f}"
            f" {rss / base_rss:6.2f}"
            + (f" {(rss - base_rss) / 1024:8.1f}" if extra_rss else "")
            + f" {size(statistics.median(row.capture_bytes)):>9s} {size(log):>9s}"
            + (f" {drops:>10s}" if dropped else "")
            + f"  {', '.join(notes)}"
        )


def measure(
    rows: list[Row],
    argv: list[str],
    out: Path,
    repeat: int,
    dropped: bool = False,
    keep: bool = False,
    extra_rss: bool = False,
) -> None:
    """Rounds interleave the rows (round_order) so that a slow spell of the machine hits
    them all. With `dropped`, the table says how many samples the last round's .heap
    files dropped; with `keep`, the last round's files are left for the caller
    (row.files) to remove."""
    rows = with_compared(rows)
    for i in range(repeat):
        for row in round_order(rows, i):
            run_once(row, argv, out, keep=i == repeat - 1)
    if dropped:
        for row in rows:
            row.dropped = dropped_samples(row.files)
    print_table(rows, dropped, extra_rss)
    if not keep:
        remove_files(rows)


COMPARED: Path | None = None  # set by main from --compare-lib


def with_compared(rows: list[Row]) -> list[Row]:
    """With --compare-lib, each row that preloads our sampler followed by the same row
    preloading the other build instead (an A/B of two versions in one run)."""
    if COMPARED is None:
        return rows
    out = []
    for row in rows:
        out.append(row)
        if row.env.get("LD_PRELOAD") == str(LIB) and row.attach_rate is None:
            env = dict(row.env, LD_PRELOAD=str(COMPARED))
            out.append(Row(f"{row.name} [compared]", env, row.argv, row.baseline))
    return out


def round_order(rows: list[Row], i: int) -> list[Row]:
    """The rows in round i's order: forward, then backward, then forward again, so that
    no row always runs just after the same one (what ran just before can slow a run)."""
    return rows if i % 2 == 0 else rows[::-1]


def remove_files(rows: list[Row]) -> None:
    for row in rows:
        for p in row.files:
            p.unlink(missing_ok=True)  # perhaps another row's too
        row.files = []


GROUPS = (
    "churn",
    "sqlite3",
    "python-malloc",
    "python",
    "torch",
    "stacks",
    "device",
    "push",
    "agent",
    "fleet",
    "other",
)


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
    ap.add_argument(
        "--compare-lib",
        type=Path,
        metavar="LIBMEMPROF",
        help="also run each row of the sampler with this build of libmemprof.so (an earlier "
        "version's), marked [compared]",
    )
    ap.add_argument(
        "--compare-mem-profiler",
        type=Path,
        metavar="MEM_PROFILER",
        help="also run the fleet rows with this mem_profiler command (an earlier version's, "
        "with its own sampler)",
    )
    ap.add_argument("--push-seconds", type=int, default=20, help="length of each push row")
    ap.add_argument(
        "--outage-seconds", type=int, default=60, help="how long the backend is down in its row"
    )
    ap.add_argument("--agent-seconds", type=int, default=600, help="how long the agent is measured")
    args = ap.parse_args()

    global RUNNER, COMPARED
    COMPARED = args.compare_lib.resolve() if args.compare_lib else None
    print(f"measured on {platform.machine()} ({os.cpu_count()} cores), {platform.platform()}\n")
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

        if "torch" in args.only:
            torch_group(out, args.repeat)

        if "stacks" in args.only:
            many_stacks_group(out, args.repeat)

        if "device" in args.only:
            rows, argv = device_rows(out)
            print(
                "\ndevice churn: 100,000 cudaMalloc/cudaFree pairs of 1-4 MiB through the "
                "stand-in runtime (no GPU)\n"
            )
            measure(rows, argv, out, args.repeat)

        if "push" in args.only:
            churn = build_program(out, "churn", "-O2", "-pthread")
            print(
                f"\npushes: churn on 1 thread for {args.push_seconds} s under `mem_profiler "
                "run` (-c 1024), allocation rate against the same run without push, median "
                "of 3 interleaved rounds"
            )
            push_group(MEM_PROFILER, churn, out, args.push_seconds, args.outage_seconds)

        if "agent" in args.only:
            churn = build_program(out, "churn", "-O2", "-pthread")
            env = dict(sampler_env(out), CHURN_SECONDS=str(args.agent_seconds + 120))
            agent_group(MEM_PROFILER, [[str(churn), "1", "0"]] * 3, env, args.agent_seconds)

        if "fleet" in args.only:
            fleet_rows(out, args.compare_mem_profiler)

        if "other" in args.only:
            control_costs(out, ATTACH_TIMES)


# Steps of bench/torch_train.py for about a minute under the sampler: ten periods of 5 s.
FLEET_TORCH_STEPS = 2000


def fleet_rows(out: Path, compared: Path | None) -> None:
    versions = {"this": MEM_PROFILER}
    if compared is not None:
        versions["compared"] = compared.resolve()
    ready, note = torch_probe()
    torch = [str(TORCH_PYTHON), str(TORCH_SCRIPT), str(FLEET_TORCH_STEPS)] if ready else None
    exe = build_program(out, "many_stacks", "-O0", *MANY_STACKS_FLAGS, exe_name="many_stacks_2m")
    print(
        "\nfleet: pushes every 5 s to a sink (pyroscope), per period: the pusher's CPU for the "
        "first and the median of the others, its peak RSS, the median bytes the target wrote "
        f"for a period (its snapshots); bench/torch_train.py {FLEET_TORCH_STEPS} at -c 1024 "
        f"{'' if torch else f'(skipped: {note}) '}and bench/many_stacks.c "
        f"{MANY_STACKS:,} at -c 1, all kept, pushed for ten periods once made"
    )
    fleet_group(versions, torch, [str(exe), str(MANY_STACKS)], lambda _: dict(os.environ))


def torch_group(out: Path, repeat: int) -> None:
    ready, versions = torch_probe()
    if not ready:
        print(f"\nPyTorch rows skipped: {versions}")
        return
    argv = [str(TORCH_PYTHON), str(TORCH_SCRIPT)]
    print(
        f"\nPyTorch on the CPU ({versions}): bench/torch_train.py,\na 2-layer MLP trained "
        f"for 30 SGD steps on one thread, torch's import included; median of {repeat} rounds\n"
    )
    rows = torch_rows(out)
    measure(rows, argv, out, repeat, dropped=True, keep=True)
    try:
        torch_parsers(rows, out, min(repeat, 3))
    finally:
        remove_files(rows)


# bench/many_stacks.c with 21 levels of two call sites under 34 fixed calls: up to 2^21
# distinct stacks of 60 frames.
MANY_STACKS = 2_000_000
MANY_STACKS_FLAGS = ("-DLEVELS=21", "-DPREFIX=34")
# Each stack's one block, freed at once. The sampler at its default rate (-c 1024) misses
# a block of s bytes with probability exp(-s / 1024): e^-64 for 64 KiB, so every stack is
# sampled, as at -c 1 but at the rate programs run with.
MANY_STACKS_BLOCK = 65536


def many_stacks_group(out: Path, repeat: int) -> None:
    exe = build_program(out, "many_stacks", "-O0", *MANY_STACKS_FLAGS, exe_name="many_stacks_2m")
    argv = [str(exe), str(MANY_STACKS), str(MANY_STACKS_BLOCK)]
    print(
        f"\n{MANY_STACKS:,} distinct stacks of 60 frames (bench/many_stacks.c, -O0), one "
        f"block of {MANY_STACKS_BLOCK // 1024} KiB each, freed at once:\nevery block is sampled "
        "at -c 1024; samples whose stack the table has no room for are dropped; "
        f"median of {repeat} rounds\n"
    )
    rows = [
        Row("no sampler", dict(os.environ)),
        Row("sampler -c 1024 (default settings)", sampler_env(out, 1024)),
    ]
    measure(rows, argv, out, repeat, dropped=True, extra_rss=True)


if __name__ == "__main__":
    main()
