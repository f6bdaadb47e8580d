"""tests/fixtures/python_heap.py driven as the pymalloc tests drive it (test_python_heap.py,
and the arm64 suite's run of it): its truth, the program line by line, the sampler's
dumps of it, and the bounds its estimates are held to."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from mem_profiler.control.control_block import segment_path
from mem_profiler.parser.common.sampling import sample_values
from mem_profiler.parser.read.heap_file import read_heap
from support.paths import FIXTURES, MEM_PROFILER
from support.processes import wait_for
from support.sampling_math import assert_estimate, blocks_estimate_sd

SCRIPT = FIXTURES / "python_heap.py"
# Amounts kept: at 1 the reproduction (20 MiB of strings, 24 of dicts, 48 of
# bytearrays, tracemalloc's count); a quarter of it elsewhere, well inside the bounds; a
# twentieth where every allocation is recorded under qemu (exact at any size).
REPRODUCTION, QUARTER, TWENTIETH = "1", "0.25", "0.05"
# The bounds: per function within 5% at -c 1 and 10% at -c 1024.
LIMITS = {1: 0.05, 1024: 0.10}


def program_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEMPROF_", "PYTHON")) and k != "LD_PRELOAD"
    }
    env["PYTHONHASHSEED"] = "0"  # pymalloc by default: PYTHONMALLOC unset
    return env


Truth = dict[str, dict[int, int]]  # {kind: {block size: blocks}} that `keep` keeps


def read_truth(argv: list[str | Path], env: dict[str, str], out: Path) -> Truth:
    """The Truth the script writes with --truth OUT, run as `argv` (its interpreter, the
    script and its options; a launcher before them)."""
    subprocess.run([*map(str, argv), "--truth", str(out)], env=env, check=True, timeout=300)
    return {
        kind: {int(size): n for size, n in sizes.items()}
        for kind, sizes in json.loads(out.read_text()).items()
    }


def expected(truth: Truth, rate: int) -> tuple[float, float]:
    """The bytes kept and the relative standard deviation of their estimate at `rate`:
    each block size sampled independently (ARCHITECTURE.md, "Sampling and unsampling")."""
    blocks: dict[int, int] = {}  # every kind's blocks of a size, sampled alike
    for sizes in truth.values():
        for size, n in sizes.items():
            blocks[size] = blocks.get(size, 0) + n
    return blocks_estimate_sd(blocks, rate)


def assert_kept(estimate: float, truth: Truth, rate: int) -> None:
    kept, rel_sd = expected(truth, rate)
    assert_estimate(estimate, kept, rel_sd, LIMITS[rate])


def inuse(heap: Path) -> float:
    return float(sample_values(read_heap(heap), "inuse_space").sum())


class Program:
    """tests/fixtures/python_heap.py at a scale (and its `options`), driven line by line;
    `launcher`, a command line it is run under."""

    def __init__(
        self,
        python: Path,
        scale: str,
        env: dict[str, str],
        launcher: tuple[str, ...] = (),
        options: tuple[str, ...] = (),
    ) -> None:
        self.proc = subprocess.Popen(
            [*launcher, str(python), str(SCRIPT), scale, *options],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.pid = int(self.stdout.readline().split()[1])

    def ask(self, command: str) -> str:
        self.stdin.write(command + "\n")
        self.stdin.flush()
        return self.stdout.readline().strip()

    def allocators(self) -> list[str]:
        """The files holding the MEM and OBJ domains' current malloc."""
        return self.ask("allocators").split()

    def wrapped(self) -> bool:
        return all(Path(path).name == "libmemprof.so" for path in self.allocators())

    def quit(self) -> int:
        self.ask("quit")
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        Path(segment_path(self.pid)).unlink(missing_ok=True)  # killed: no exit handler ran


def dump(pid: int) -> Path:
    proc = subprocess.run(
        [MEM_PROFILER, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.split()[0])


def kept_in_a_run(prog: Program) -> float:
    """Under `mem_profiler run`: once the allocators are wrapped, the live bytes `keep`
    adds between two dumps of the window; the program then quits."""
    try:
        wait_for(prog.wrapped, timeout=60, what="the allocators to be wrapped")
        before = dump(prog.pid)
        assert prog.ask("keep") == "kept"
        after = dump(prog.pid)
        assert prog.quit() == 0
    finally:
        prog.kill()
    return inuse(after) - inuse(before)
