"""A new user's first hour: the README's recipe for one's own program, run as written
(its two command lines, read from README.md, the program put in `./myprog args...`'s
place), with no option of ours added, names the functions that hold the memory with
their bytes: on a Python program that keeps 16 MiB in a module-level cache
(tests/fixtures/python_cache.py), and on a C service stopped with SIGTERM as services
are stopped (tests/fixtures/endings.c serve, which keeps 2,000 blocks of 4096 B)."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess

from support.paths import FIXTURES, MEM_PARSER, MEM_PROFILER, ROOT
from support.sampling_math import assert_estimate, relative_sd

MB = 1 << 20
RECIPE = re.search(
    r"^For your own program:\n\n```\n(mem_profiler run .*)\n(mem_parser .*)\n```$",
    (ROOT / "README.md").read_text(),
    re.M,
)


def recipe_run(program: list[str]) -> list[str]:
    """The README's `mem_profiler run` line, `program` in place of its `./myprog args...`."""
    assert RECIPE is not None
    words = shlex.split(RECIPE[1])
    assert words[0] == "mem_profiler" and words[-2:] == ["./myprog", "args..."], RECIPE[1]
    return [MEM_PROFILER, *words[1:-2], *program]


def recipe_report(pid: int, cwd) -> list[str]:
    """The README's `mem_parser` line for the process `pid`: its report's lines."""
    assert RECIPE is not None
    words = shlex.split(RECIPE[2].replace("<pid>", str(pid)))
    assert words[0] == "mem_parser", RECIPE[2]
    done = subprocess.run(
        [MEM_PARSER, *words[1:]], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def first_row(lines: list[str]) -> tuple[float, str]:
    """The report's first function row: its cum MB and its name."""
    row = next(line for line in lines if re.match(r"^\s+[0-9.]+\s+[0-9.]+%", line)).split()
    return float(row[3]), " ".join(row[5:])


def test_a_python_program_that_keeps_a_module_cache(tmp_path):
    proc = subprocess.run(
        recipe_run(["python3", str(FIXTURES / "python_cache.py")]),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"myprog_(\d+)\.0001\.heap", proc.stderr)
    assert m is not None, proc.stderr
    pid = int(m[1])
    cum, name = first_row(recipe_report(pid, tmp_path))
    assert name == "fill_cache (python_cache.py)"
    m = re.search(r"^cache_bytes=(\d+)$", proc.stdout, re.M)
    assert m is not None, proc.stdout
    truth = int(m[1])
    assert_estimate(cum * MB, truth, relative_sd(256, 64 * 1024, 1024) + 0.05 * MB / truth, 0.05)


def test_a_c_service_stopped_with_sigterm(build_fixture, tmp_path):
    exe = build_fixture("endings")
    service = subprocess.Popen(
        recipe_run([str(exe), "serve"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )
    assert service.stdout is not None
    try:
        assert service.stdout.readline() == "serving\n"
        service.send_signal(signal.SIGTERM)  # to `mem_profiler run`, which passes it on
        _, err = service.communicate(timeout=60)
    finally:
        service.kill()
        service.wait()
    assert service.returncode == 128 + signal.SIGTERM, err
    m = re.search(r"myprog_(\d+)\.0001\.heap", err)
    assert m is not None, err
    pid = int(m[1])
    cum, name = first_row(recipe_report(pid, tmp_path))
    assert name == "serve_request"
    assert_estimate(cum * MB, 2000 * 4096, relative_sd(2000, 4096, 1024) + 0.05 * MB / 8e6, 0.05)
