"""Programs run under the real sampler through the installed command line
(`mem_profiler run`, `mem_profiler gate`), windows of running processes taken through
it (`mem_profiler -p`), and the profiles they write read through the real parser
pipeline, in this process or through the installed mem_parser."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from mem_profiler.controller import list_targets
from mem_profiler.parser.aggregate import aggregate
from mem_profiler.parser.heapfile import read_heap
from mem_profiler.parser.symbolize import symbolize
from support.paths import MEM_PARSER, MEM_PROFILER
from support.processes import wait_for

SITES_EXACT = (1000, 4000, 10)  # site_pages, site_small, site_transient blocks at -c 1


def profile_run(
    argv: list[str | Path],
    prefix: Path,
    rate: int = 1024,
    *extra: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess, list[Path]]:
    """Run argv under `mem_profiler run`; returns the process and the .heap files written."""
    cmd = [MEM_PROFILER, "run", "-c", str(rate), "-o", str(prefix), *extra, "--", *map(str, argv)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    written = [
        Path(line.split("wrote ", 1)[1])
        for line in proc.stderr.splitlines()
        if line.startswith("mem_profiler: wrote ")
    ]
    return proc, written


def one_heap(proc: subprocess.CompletedProcess, files: list) -> object:
    """The one .heap file of a run that succeeded."""
    assert proc.returncode == 0, proc.stderr
    assert len(files) == 1, proc.stderr
    return files[0]


def capture_cli(pid: int, *args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """`mem_profiler -p PID ARGS`: a window of a running process, as a user takes it."""
    return subprocess.run(
        [MEM_PROFILER, "-p", str(pid), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def window_to_interrupt(pid: int, *args: str | Path) -> subprocess.Popen:
    """`mem_profiler -p PID ARGS` once the target says its window is open, for the test
    to end with SIGINT as from a terminal (even where this runner ignores SIGINT)."""
    controller = subprocess.Popen(
        [MEM_PROFILER, "-p", str(pid), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(
        lambda: any(t.pid == pid and t.state.startswith("capturing") for t in list_targets()),
        timeout=30,
        what="the window to open",
    )
    return controller


def gate(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`mem_profiler gate ARGS`."""
    return subprocess.run(
        [MEM_PROFILER, "gate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def run_parser(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`mem_parser ARGS`, as a user runs it; it must succeed."""
    done = subprocess.run(
        [MEM_PARSER, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done


def flat_cum(heap: Path, binary: Path, index: str = "inuse_space"):
    """The aggregated table of a .heap file through the real parser pipeline."""
    return aggregate(symbolize(read_heap(heap), binary), index)


def report(heap: Path, binary: Path, index: str = "inuse_space") -> dict[str, tuple[float, float]]:
    """{function: (flat, cum)}"""
    table = flat_cum(heap, binary, index)
    rows = zip(table.names, table.flat, table.cum, strict=True)
    return {name: (float(f), float(c)) for name, f, c in rows}


def total(heap: Path, binary: Path, index: str = "inuse_space") -> float:
    return float(flat_cum(heap, binary, index).total)
