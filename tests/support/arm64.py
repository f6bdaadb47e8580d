"""The arm64 suite's set-up: the sampler cross-built for aarch64 (`make arm64`), Debian's
arm64 libraries unpacked into a sysroot, fixtures built with Debian's cross compiler, and
programs run under qemu-aarch64-static -L SYSROOT through `mem_profiler run`, as on an
arm64 machine (MEMPROF_LIB names the aarch64 sampler)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.paths import FIXTURES, ROOT
from support.profiling import profile_run

SAMPLER = ROOT / "build" / "aarch64" / "libmemprof.so"
SYSROOT = ROOT / "build" / "arm64-sysroot"
CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64-static"
# as tests/conftest.py builds the x86 fixtures: frame pointers, nothing inlined
FRAME_POINTERS = ("-O1", "-fno-omit-frame-pointer")
# as the x86 unwinder tests build theirs: no frame pointers, only the unwind information
NO_FRAME_POINTERS = ("-O1", "-fomit-frame-pointer")


def missing() -> str | None:
    """Why the arm64 suite cannot run here, or None."""
    for tool in (CC, QEMU):
        if shutil.which(tool) is None:
            return f"no {tool} (Debian's gcc-aarch64-linux-gnu, qemu-user-static did not install)"
    if not SAMPLER.is_file():
        return f"{SAMPLER} is not built: `make arm64` says why"
    if not (SYSROOT / ".installed").is_file():
        return f"no arm64 sysroot in {SYSROOT}: `make arm64` says why"
    return None


def build(name: str, out_dir: Path, *flags: str, shared: bool = False) -> Path:
    """tests/fixtures/<name>.c built for aarch64 with `flags`; no inlining, sibling calls or
    identical functions folded into one (left and right of call_paths.c), which would
    change the stacks the program says it took."""
    out = out_dir / f"{'lib' if shared else ''}{name}-arm64{'-'.join(['', *flags])}"
    if not out.exists():
        subprocess.run(
            [
                CC,
                "-g",
                *flags,
                "-fno-inline",
                "-fno-optimize-sibling-calls",
                "-fno-ipa-icf",
                *(["-shared", "-fPIC"] if shared else []),
                "-pthread",
                "-o",
                str(out),
                str(FIXTURES / f"{name}.c"),
                "-ldl",
            ],
            check=True,
        )
    return out


def run(
    argv: list, prefix: Path, rate: int, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, list[Path]]:
    """`mem_profiler run` of an arm64 program under qemu-user with the aarch64 sampler,
    in `env` (default: ours). qemu runs them some 20 times slower than the host would,
    and slower still beside other tests: a hang is told from them after 10 minutes."""
    env = dict(os.environ if env is None else env, MEMPROF_LIB=str(SAMPLER))
    return profile_run([QEMU, "-L", SYSROOT, *argv], prefix, rate, *extra, env=env, timeout=600)


skip_unless_arm64 = pytest.mark.skipif(missing() is not None, reason=str(missing()))
