"""The command lines that only launch or control a process stay light: numpy, the parser
and the ELF reader are loaded by the commands that read profiles, not by `run`, `-p`,
`list` or `dump`, and cffi (the control block), ssl (the push) and the gate's rules by
the commands that use them, not by `run` (each of those pays its imports on every call)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = (
    "numpy",
    "elftools",
    "mem_profiler.parser.read.heap_file",
    "textual",
    "cffi",
    "ssl",
    "mem_profiler.gate.suppressions",
)


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


@pytest.mark.skipif(os.cpu_count() == 1, reason="OpenBLAS starts no thread of its own on one core")
def test_mem_parser_loads_numpy_with_one_blas_thread(tmp_path):
    """numpy's OpenBLAS would start a thread per core, spinning for work a report never
    gives it; mem_parser loads it with none of its own, and leaves the environment of
    the programs it runs as it found it."""
    probe = (
        "import os, mem_profiler.cmd.mem_parser; "
        "print(len(os.listdir('/proc/self/task')), 'OPENBLAS_NUM_THREADS' in os.environ)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert out.split() == ["1", "False"]
