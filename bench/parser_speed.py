"""`make bench`, parser part: `mem_parser -t` on a large generated .heap file, cold (empty
symbol cache) and warm, against `jeprof --text` on the same file: wall time and peak RSS.
Then the event log reader on a 60 MB log.

The file holds 100,000 distinct stacks of depth 30 whose frames are real return
addresses (the instruction after each `call`) of the C++ fixture built with -g and of
the libstdc++ it links, mapped where a real run of the fixture under the sampler found
them (its header, build-ids and MAPPED_LIBRARIES are kept). The log is the reader's
tests' large one (tests/support/synthetic_logs.py)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile
from peak_rss import PeakRss

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "build" / "libmemprof.so"
FIXTURE = ROOT / "tests" / "fixtures" / "cxx_new.cpp"
MEM_PARSER = Path(sys.executable).with_name("mem_parser")
# a process that reads the log at argv[1] (its files' prefix) and nothing else
READ_LOG = (
    "import sys; from mem_profiler.parser.read.event_log import read_log; read_log(sys.argv[1])"
)
_CALL_RE = re.compile(r"^\s*([0-9a-f]+):\s+call")
_INSN_RE = re.compile(r"^\s*([0-9a-f]+):")


def real_run(folder: Path) -> tuple[Path, Path]:
    """The fixture, built with -g, and the .heap file of one run of it under the sampler,
    as heap_v2 text."""
    exe = folder / "cxx_new"
    subprocess.run(
        ["g++", "-g", "-O1", "-fno-omit-frame-pointer", "-o", str(exe), str(FIXTURE)], check=True
    )
    env = dict(
        os.environ,
        LD_PRELOAD=str(LIB),
        MEMPROF_CAPTURE="1",
        MEMPROF_RATE="1024",
        MEMPROF_PREFIX=f"{folder}/run_",
    )
    subprocess.run([str(exe), "1000"], env=env, check=True, stdout=subprocess.DEVNULL)
    # as heap_v2 text, which the generated file is, so that jeprof reads it too
    text = folder / "run.txt"
    subprocess.run(
        [str(MEM_PARSER), "-f", str(next(folder.glob("run_*.heap"))), "--jeprof", str(text)],
        check=True,
    )
    return exe, text


def return_addresses(path: str) -> np.ndarray:
    """Link-time addresses of the instructions that follow a `call` in `path`."""
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", path], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    out, after_call = [], False
    for line in listing:
        m = _INSN_RE.match(line)
        if m is None:
            continue
        if after_call:
            out.append(int(m[1], 16))
        after_call = _CALL_RE.match(line) is not None
    return np.array(out, np.uint64)


def runtime_addresses(path: str, vaddrs: np.ndarray, maps: list[list[str]]) -> np.ndarray:
    """vaddrs of `path` where the run mapped them (through its executable PT_LOAD)."""
    with open(path, "rb") as f:
        seg = next(
            s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD" and s["p_flags"] & 1
        )
    real = os.path.realpath(path)
    start, offset = next(
        (int(m[0].split("-")[0], 16), int(m[2], 16))
        for m in maps
        if len(m) > 5 and "x" in m[1] and os.path.realpath(m[5]) == real
    )
    return vaddrs - np.uint64(seg["p_vaddr"]) + np.uint64(seg["p_offset"] + start - offset)


def generate(exe: Path, run: Path, out: Path, n_stacks: int, depth: int, seed: int) -> None:
    """Write the large .heap file: the run's header and maps, generated stacks."""
    text = run.read_text()
    header = [line for line in text.split("\n@", 1)[0].splitlines() if not line.startswith(" ")]
    maps_text = text.split("MAPPED_LIBRARIES:\n", 1)[1]
    maps = [line.split() for line in maps_text.splitlines()]
    libstdcxx = next(m[5] for m in maps if len(m) > 5 and "libstdc++" in m[5])
    pool = np.concatenate(
        [
            runtime_addresses(str(exe), return_addresses(str(exe)), maps),
            runtime_addresses(libstdcxx, return_addresses(libstdcxx), maps),
        ]
    )
    rng = np.random.default_rng(seed)
    frames = pool[rng.integers(0, len(pool), size=(n_stacks, depth))]
    objs = rng.integers(1, 100, size=n_stacks)
    nbytes = objs * rng.integers(16, 65536, size=n_stacks)
    live = rng.integers(0, objs + 1)
    lines = header + [
        f"  t*: {live.sum()}: {(live * nbytes // objs).sum()} [{objs.sum()}: {nbytes.sum()}]"
    ]
    for stack, o, b, lv in zip(
        frames.tolist(), objs.tolist(), nbytes.tolist(), live.tolist(), strict=True
    ):
        lines.append("@ " + " ".join(map(hex, stack)))
        lines.append(f"  t*: {lv}: {lv * b // o} [{o}: {b}]")
    out.write_text("\n".join(lines) + "\n\nMAPPED_LIBRARIES:\n" + maps_text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stacks", type=int, default=100_000)
    ap.add_argument("--depth", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5, help="runs per mem_parser row (median)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runner = PeakRss(folder)
        exe, run = real_run(folder)
        heap = folder / "large.heap"
        generate(exe, run, heap, args.stacks, args.depth, seed=1)
        parse = ["-p", str(exe), "-f", str(heap), "-t"]
        cold, warm = [], []
        for i in range(args.repeat):
            env = dict(os.environ, MEMPROF_CACHE_DIR=str(folder / f"cache{i}"))
            cold.append(runner.run_parser(parse, env, folder))
            warm.append(runner.run_parser(parse, env, folder))
        rows = [
            ("mem_parser -t, cold symbol cache", cold),
            ("mem_parser -t, warm symbol cache", warm),
        ]
        if shutil.which("jeprof"):
            jeprof = ["jeprof", "--text", str(exe), str(heap)]
            rows.append(("jeprof --text", [runner.run(jeprof, dict(os.environ), folder)]))
        size = heap.stat().st_size / 1e6
        print(
            f"\nparser: {args.stacks:,} stacks of depth {args.depth} ({size:.0f} MB .heap);"
            f" median of {args.repeat} runs (jeprof: one)\n"
        )
        reference = statistics.median(t for t, _ in rows[-1][1])
        print(f"{'command':36s} {'wall s':>8s} {'RSS MiB':>8s} {'jeprof / this':>14s}")
        for name, runs in rows:
            seconds = statistics.median(t for t, _ in runs)
            rss = statistics.median(kib for _, kib in runs) / 1024
            print(f"{name:36s} {seconds:8.3f} {rss:8.1f} {reference / seconds:14.1f}")
        log_reader(runner, folder, args.repeat)


def log_reader(runner: PeakRss, folder: Path, repeat: int) -> None:
    """The event log reader on a log of 1.65 M events and 100,000 stack records, in a
    process of its own (its start-up included)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.synthetic_logs import large_log

    log = folder / "large_1.0001.1.memlog"
    large_log(log)
    argv = [sys.executable, "-c", READ_LOG, str(folder / "large_1.0001")]
    runs = [runner.run(argv, dict(os.environ), folder) for _ in range(repeat)]
    print(
        f"\nevent log reader, {log.stat().st_size / 1e6:.0f} MB log (1.65 M events, 100,000"
        f" stacks): {statistics.median(t for t, _ in runs):.2f} s,"
        f" {statistics.median(kib for _, kib in runs) / 1024:.0f} MiB (median of {repeat})"
    )


if __name__ == "__main__":
    main()
