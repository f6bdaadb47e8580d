"""Runs of `make bench` timed and measured for peak RSS through bench/peak_rss.c, which
says why a child of the bench's own process cannot report its peak."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "peak_rss.c"
PARSER = Path(__file__).resolve().parent / "parser_peak.py"


class PeakRss:
    """The runner, built into `folder`; each run's figure passes through a file there,
    read and removed before the run returns."""

    def __init__(self, folder: Path) -> None:
        self.exe = folder / "peak_rss"
        self.result = folder / "peak_rss.out"
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(self.exe), str(SOURCE)],
            check=True,
        )

    def command(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that run `argv` in `env` through the runner (for a
        Popen of one's own; then `peak_kib`). LD_PRELOAD is the workload's, not the
        runner's."""
        env = dict(env)
        if "LD_PRELOAD" in env:
            env["PEAK_RSS_PRELOAD"] = env.pop("LD_PRELOAD")
        return [str(self.exe), str(self.result), *argv], env

    def peak_kib(self) -> int:
        """The peak RSS of the last run, in KiB."""
        try:
            return int(self.result.read_text())
        finally:
            self.result.unlink()

    def run(self, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
        """Seconds of wall time and peak RSS in KiB of `argv`, its output discarded; a
        failure raises CalledProcessError."""
        argv, env = self.command(argv, env)
        start = time.perf_counter()
        subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - start, self.peak_kib()

    def run_parser(self, args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
        """run() of `mem_parser ARGS`, its peak RSS that of mem_parser and of the helper
        it may start added up (parser_peak.py)."""
        result = self.result.with_name("parser_peak.out")
        seconds, _ = self.run([sys.executable, str(PARSER), str(result), *args], env, cwd)
        try:
            return seconds, int(result.read_text())
        finally:
            result.unlink()
