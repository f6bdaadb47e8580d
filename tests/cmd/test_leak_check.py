"""`mem_profiler run --leak-check` judges leaks as LeakSanitizer and valgrind do: a block
something still points to at exit (from the program's data, its thread-local storage,
its stack, or a block so reached) is no leak, and what the interpreter keeps until exit
on purpose is left out; the report says what and how much.  A C and a Python hello world
and `ls` pass; the 1,000 blocks tests/fixtures/leak_planted.c leaks are found with their
stack and bytes (exact at -c 1); a user's suppression file leaves them out, and the
report says so; of tests/fixtures/leak_reachable.c's blocks only its lost cycle is a
leak."""

from __future__ import annotations

import re
import subprocess

import pytest
from support.paths import MEM_PROFILER

LEAKED = 1000 * 100
REACHABLE = re.compile(
    r"note: ([\d,]+) B \([\d.]+ [KMG]?i?B\) live at exit was still pointed to from the"
    r" program's data, its thread-local storage or its stack: not leaked"
)


def leak_check(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MEM_PROFILER, "run", "-c", "1", "--leak-check", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def verdict(proc: subprocess.CompletedProcess) -> list[str]:
    """The lines of the budget's verdict: its first, stacks and notes."""
    lines = proc.stderr.splitlines()
    first = next(
        i for i, line in enumerate(lines) if line.split()[:2] in (["ok", "host"], ["FAIL", "host"])
    )
    return lines[
        first : next(
            i for i in range(first + 1, len(lines)) if lines[i].startswith("mem_profiler gate:")
        )
    ]


@pytest.fixture(scope="module")
def planted(build_fixture):
    return build_fixture("leak_planted")


def test_a_c_hello_world_passes(planted, tmp_path):
    proc = leak_check(tmp_path, "--", str(planted))
    assert (proc.returncode, proc.stdout) == (0, "hello\n"), proc.stderr
    first, note = verdict(proc)
    assert first.startswith("ok   host max-live-at-exit 0 B <= limit 0 B, exact"), proc.stderr
    reachable = REACHABLE.search(note)
    assert reachable, proc.stderr
    assert int(reachable[1].replace(",", "")) >= 4096  # printf's buffer, which stdout holds


def test_a_python_hello_world_passes(tmp_path):
    proc = leak_check(tmp_path, "--", "python3", "-c", "print('hello')")
    assert (proc.returncode, proc.stdout) == (0, "hello\n"), proc.stderr
    first, *notes = verdict(proc)
    assert first.startswith("ok   host max-live-at-exit 0 B <= limit 0 B, exact"), proc.stderr
    assert "Python's interpreter and modules" in notes[0]
    assert REACHABLE.search(notes[1]), proc.stderr


def test_ls_passes(tmp_path):
    proc = leak_check(tmp_path, "--", "ls", "/")
    assert proc.returncode == 0, proc.stderr
    first, *notes = verdict(proc)
    assert first.startswith("ok   host max-live-at-exit 0 B <= limit 0 B, exact"), proc.stderr
    assert REACHABLE.search(notes[-1]), proc.stderr


def test_only_what_nothing_points_to_is_a_leak(build_fixture, tmp_path):
    proc = leak_check(tmp_path, "--", str(build_fixture("leak_reachable")))
    assert proc.returncode == 1, proc.stderr
    first, title, *rest = verdict(proc)
    assert first.startswith("FAIL host max-live-at-exit 1,200 B"), proc.stderr
    stacks = [line.split() for line in rest if not line.strip().startswith("note:")]
    assert [s[:3] for s in stacks] == [["1,200", "B", "node"]], proc.stderr
    assert "lose_a_cycle" in stacks[0], proc.stderr
    reachable = REACHABLE.search(proc.stderr)
    assert reachable and int(reachable[1].replace(",", "")) >= 1000 + 2000 + 3000 + 4000


def test_a_planted_leak_is_found_and_a_users_suppression_leaves_it_out(planted, tmp_path):
    proc = leak_check(tmp_path, "--", str(planted), "leak")
    assert proc.returncode == 1, proc.stderr
    lines = verdict(proc)
    assert lines[0].startswith(f"FAIL host max-live-at-exit {LEAKED:,} B"), proc.stderr
    assert lines[2].split()[:3] == [f"{LEAKED:,}", "B", "plant_leaks"], proc.stderr

    rules = tmp_path / "leaks.supp"
    rules.write_text("# the planted blocks\nleak:plant_leaks\n")
    proc = leak_check(tmp_path, "--suppressions", str(rules), "--", str(planted), "leak")
    assert proc.returncode == 0, proc.stderr
    first, suppressed, reachable = verdict(proc)
    assert first.startswith("ok   host max-live-at-exit 0 B <= limit 0 B"), proc.stderr
    assert "your suppressions 97.66 KiB" in suppressed
    assert REACHABLE.search(reachable), proc.stderr


@pytest.mark.parametrize(
    "content, said",
    [
        ("leak\n", "{path}:1: expected 'leak:PATTERN', found text of 4 characters"),
        ("# fine\nrace:foo\n", "{path}:2: expected 'leak:PATTERN', found text of 8 characters"),
        ("leak:*\n", "{path}:1: expected 'leak:PATTERN', found text of 6 characters"),
    ],
)
def test_a_bad_suppressions_file_is_refused_naming_the_line(tmp_path, content, said):
    rules = tmp_path / "bad.supp"
    rules.write_text(content)
    proc = leak_check(tmp_path, "--suppressions", str(rules), "--", "/bin/true")
    assert (proc.returncode, proc.stderr) == (2, f"mem_profiler: {said.format(path=rules)}\n")
