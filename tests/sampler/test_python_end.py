"""A Python program's end is before its interpreter's finalization: the exit's files are
written as the interpreter begins to finalize, after the program's atexit handlers, so
that what a module keeps is in them (tests/fixtures/python_cache.py keeps 16 MiB in a
module-level dict, which finalization frees).  Read as a new user reads them: the
default -t names the function that fills the cache with its bytes, within the sampling
error, under the one line that says when the profile was taken; the gate's
--max-live-at-exit fails the program naming it; the same in a window opened with -p that
ends with the program; on every CPython 3.9 to 3.13 and Debian's."""

from __future__ import annotations

import re
import subprocess

import pytest
from support.interpreters import interpreters
from support.paths import FIXTURES, MEM_PARSER, MEM_PROFILER
from support.processes import wait_for
from support.sampling_math import assert_estimate, relative_sd

from mem_profiler.control.controller import list_targets
from mem_profiler.control.procfs import parent_pid

PROGRAM = FIXTURES / "python_cache.py"
RATE = 4096
KEEPER = "fill_cache (python_cache.py)"
ENDED = (
    "Taken as the Python interpreter began to finalize, after the program's atexit"
    " handlers: what the program kept at its end."
)
MB = 1 << 20


def kept_by_keeper(heap: str) -> tuple[float, list[str]]:
    """The first row of `mem_parser -f HEAP -t`, as a user reads it (under the line on the
    program's end and the one on its peak): its cum MB and the report's lines."""
    report = subprocess.run(
        [MEM_PARSER, "-f", heap, "-t"], capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    assert lines[1] == ENDED, report.stdout
    first = next(line for line in lines[2:] if not line.startswith("Peak: ")).split()
    assert " ".join(first[5:]) == KEEPER, report.stdout
    return float(first[3]), lines


def assert_the_cache(heap: str, stdout: str) -> None:
    m = re.search(r"^cache_bytes=(\d+)$", stdout, re.M)
    assert m is not None, stdout
    truth = int(m[1])
    cum, _ = kept_by_keeper(heap)
    # 256 buffers of 64 KiB at -c 4096; the report prints MB to 0.1
    assert_estimate(cum * MB, truth, relative_sd(256, 64 * 1024, RATE) + 0.05 * MB / truth, 0.05)


@pytest.mark.parametrize("python", interpreters())
def test_the_default_report_names_what_the_program_kept(python, tmp_path):
    proc = subprocess.run(
        [MEM_PROFILER, "run", "-c", str(RATE), "-o", str(tmp_path / "app_"), "--", python, PROGRAM],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (heap,) = tmp_path.glob("app_*.heap")
    assert_the_cache(str(heap), proc.stdout)
    # the table at the peak says nothing of the end, which is not its moment
    peak = subprocess.run(
        [MEM_PARSER, "-f", heap, "--peak", "-t"], capture_output=True, text=True, timeout=120
    )
    assert peak.returncode == 0 and peak.stdout.startswith("Total: "), peak.stderr
    assert ENDED not in peak.stdout


def test_the_gate_fails_a_program_that_keeps_more_than_its_budget(tmp_path):
    proc = subprocess.run(
        [MEM_PROFILER, "gate", "--max-live-at-exit", "5MiB", "--", "python3", PROGRAM],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    verdict = proc.stderr.splitlines()
    failed = next(i for i, line in enumerate(verdict) if line.startswith("FAIL host"))
    assert "max-live-at-exit" in verdict[failed]
    assert verdict[failed + 2].split()[2:4] == ["fill_cache", "(python_cache.py:15)"], proc.stderr


def test_a_window_of_p_that_ends_with_the_program(tmp_path):
    target = subprocess.Popen(
        [MEM_PROFILER, "run", "--idle", "--", "python3", PROGRAM, "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert target.stdout is not None
        assert target.stdout.readline() == "ready\n"
        pid = next(
            x.pid
            for x in wait_for(
                lambda: [t for t in list_targets() if parent_pid(t.pid) == target.pid],
                60,
                "the program",
            )
        )
        controller = subprocess.Popen(
            [
                MEM_PROFILER,
                "-p",
                str(pid),
                "-s",
                "300",
                "-c",
                str(RATE),
                "-o",
                str(tmp_path / "p_"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(
            lambda: [t for t in list_targets() if t.pid == pid and t.state.startswith("capturing")],
            60,
            "the window",
        )
        assert target.stdin is not None
        target.stdin.write("go\n")
        target.stdin.close()
        out, err = controller.communicate(timeout=300)
        stdout = target.stdout.read()
        assert target.wait(timeout=60) == 0
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()
    (heap,) = tmp_path.glob("p_*.heap")
    assert_the_cache(str(heap), stdout)
