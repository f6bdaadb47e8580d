"""Where the tests find the source tree, the sampler they run and the installed command
lines."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
LIBMEMPROF = ROOT / "build" / "libmemprof.so"


def installed_command(name: str) -> str:
    """The console script `name` installed next to the interpreter running the tests
    (.venv/bin/<name>): the tests run the command line a user runs."""
    return str(Path(sys.executable).with_name(name))


MEM_PROFILER = installed_command("mem_profiler")
MEM_PARSER = installed_command("mem_parser")
