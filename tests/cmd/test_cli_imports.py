"""The command lines that only launch or control a process stay light: numpy, the parser
and the ELF reader are loaded by the commands that read profiles, not by `run`, `-p`,
`list` or `dump`, and cffi (the control block), ssl (the push) and the gate's rules by
the commands that use them, not by `run` (each of those pays its imports on every call)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.paths import MEM_PARSER
from support.profiling import one_heap, profile_run

HEAVY = (
    "numpy",
    "elftools",
    "mem_profiler.parser.read.heap_file",
    "textual",
    "cffi",
    "ssl",
    "mem_profiler.gate.suppressions",
)
# What only some commands or some paths need: a budget file (tomllib, shlex, the budgets'
# model), a suggestion for a mistyped option (difflib), a push (urllib.parse, base64), a
# run that wrote nothing (shutil, the ELF headers), JSON, an event log (glob).
ON_USE = (
    "tomllib",
    "shlex",
    "difflib",
    "base64",
    "json",
    "shutil",
    "glob",
    "mem_profiler.core.program_kind",
    "mem_profiler.gate.budgets",
)


def heavy_imports(module: str, folder, heavy: tuple[str, ...] = HEAVY) -> str:
    """The `heavy` modules a fresh interpreter has loaded once it imported `module`."""
    probe = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_mem_profiler_imports_nothing_heavy(tmp_path):
    assert heavy_imports("mem_profiler.cmd.mem_profiler", tmp_path) == "[]"


def test_mem_profiler_imports_what_some_paths_use_on_use(tmp_path):
    """`mem_profiler run -- /bin/true` is interpreter, click and about 35 ms of its own."""
    assert heavy_imports("mem_profiler.cmd.mem_profiler", tmp_path, ON_USE) == "[]"


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


def test_a_report_of_cached_symbols_imports_no_elf_reader(build_fixture, tmp_path):
    """pyelftools (50 ms of imports on every call) reads what the symbol cache does not
    hold: the first report of a profile needs it, the same report again does not."""
    program = build_fixture("distinct_stacks")
    heap = one_heap(*profile_run([program, 1000], tmp_path / "p_", 1))
    env = dict(os.environ, MEMPROF_CACHE_DIR=str(tmp_path / "cache"), PYTHONPROFILEIMPORTTIME="1")
    loaded = []
    for _ in range(2):
        proc = subprocess.run(
            [MEM_PARSER, "-p", program, "-f", heap, "-t"], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert "distinct_stacks" in proc.stdout or "branch" in proc.stdout, proc.stdout
        loaded.append(" elftools.elf.elffile\n" in proc.stderr)
    assert loaded == [True, False]
