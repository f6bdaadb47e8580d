"""`mem_profiler run --leak-check` judges leaks as LeakSanitizer and valgrind do: what the C
library, the loader and the Python interpreter keep until exit on purpose is left out,
and the report says what and how much.  A C and a Python hello world pass; the 1,000
blocks tests/fixtures/leak_planted.c leaks are found with their stack and bytes (exact
at -c 1); a user's suppression file leaves them out, and the report says so."""

from __future__ import annotations

import subprocess

import pytest
from support.paths import MEM_PROFILER

LEAKED = 1000 * 100


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
    assert note.strip().startswith("note: left out as kept until exit on purpose, not leaked:")
    assert "stdio's buffers 4.00 KiB" in note  # printf's


def test_a_python_hello_world_passes(tmp_path):
    proc = leak_check(tmp_path, "--", "python3", "-c", "print('hello')")
    assert (proc.returncode, proc.stdout) == (0, "hello\n"), proc.stderr
    first, note = verdict(proc)
    assert first.startswith("ok   host max-live-at-exit 0 B <= limit 0 B, exact"), proc.stderr
    assert "Python's interpreter and modules" in note


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
    first, note = verdict(proc)
    assert first.startswith("ok   host max-live-at-exit 0 B <= limit 0 B"), proc.stderr
    assert "your suppressions 97.66 KiB" in note and "stdio's buffers" in note


@pytest.mark.parametrize(
    "content, said",
    [
        ("leak\n", "{path}:1: expected 'leak:PATTERN', found 'leak'"),
        ("# fine\nrace:foo\n", "{path}:2: expected 'leak:PATTERN', found 'race:foo'"),
        ("leak:*\n", "{path}:1: expected 'leak:PATTERN', found 'leak:*'"),
    ],
)
def test_a_bad_suppressions_file_is_refused_naming_the_line(tmp_path, content, said):
    rules = tmp_path / "bad.supp"
    rules.write_text(content)
    proc = leak_check(tmp_path, "--suppressions", str(rules), "--", "/bin/true")
    assert (proc.returncode, proc.stderr) == (2, f"mem_profiler: {said.format(path=rules)}\n")
