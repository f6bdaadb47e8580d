"""What every bench group shares: where the checkout's library and commands are, the
bench's C programs built, and the environment that preloads the sampler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "build" / "libmemprof.so"
MEM_PROFILER = Path(sys.executable).with_name("mem_profiler")


def build_program(
    out: Path, name: str, optimization: str, *flags: str, exe_name: str | None = None
) -> Path:
    """bench/NAME.c built into out/NAME (or out/EXE_NAME) with gcc, debug information and
    frame pointers."""
    exe = out / (exe_name or name)
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
