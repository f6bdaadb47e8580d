"""Stacks through the calling-context tree, the capture file and the parser: the
collapsed stacks `mem_parser` gives are the paths the program itself says it took
(tests/fixtures/call_paths.c), with the bytes it kept on each: branching paths that
share their root end, the same frames from two threads, and a recursion 500 deep cut
at the depth limit."""

from __future__ import annotations

from support.profiling import profile_run, run_parser
from support.unwound import collapsed_paths, paths_taken

DEPTH = 128  # the largest: the recursion is cut to its innermost 128 frames


def test_collapsed_stacks_are_the_paths_the_program_took(build_fixture, tmp_path):
    exe = build_fixture("call_paths")
    truth = tmp_path / "paths.txt"
    proc, files = profile_run([exe, truth], tmp_path / "p_", 1, "-d", str(DEPTH))
    assert proc.returncode == 0 and len(files) == 1, proc.stderr
    expected = paths_taken(truth, DEPTH)
    found = collapsed_paths(run_parser("--collapsed", "-p", exe, "-f", files[0]).stdout)
    assert {path: found.get(path) for path in expected} == expected
    assert len(expected) == 1024 + 2
