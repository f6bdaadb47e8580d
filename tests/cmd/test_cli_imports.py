"""The command lines that only launch or control a process stay light: numpy, the parser
and the ELF reader are loaded by the commands that read profiles, not by `run`, `-p`,
`list` or `dump` (each of those pays its imports on every call)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "elftools", "mem_profiler.parser.read.heap_file", "textual")


def heavy_imports(module: str, folder) -> str:
    """The HEAVY modules a fresh interpreter has loaded once it imported `module`."""
    probe = f"import sys, {module}; print([m for m in {HEAVY!r} if m in sys.modules])"
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_mem_profiler_imports_nothing_heavy(tmp_path):
    assert heavy_imports("mem_profiler.cmd.mem_profiler", tmp_path) == "[]"


def test_the_package_root_loads_the_api_on_first_use(tmp_path):
    probe = (
        "import sys, mem_profiler; before = 'mem_profiler.api' in sys.modules; "
        "mem_profiler.is_capturing; print(before, 'mem_profiler.api' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True"]
