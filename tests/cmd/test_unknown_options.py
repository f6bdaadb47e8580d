"""A mistyped option is named as an option that does not exist, with the nearest real
one and the help to read, exit status 2: for `run` (whose COMMAND follows its options
as it is, so that `--bogus` was once taken for the program), `-p` and `gate`."""

from __future__ import annotations

import subprocess

import pytest
from support.paths import MEM_PROFILER


@pytest.mark.parametrize(
    "args,said",
    [
        (
            ["run", "--bogus", "x", "--", "/bin/true"],
            "unknown option --bogus: see mem_profiler run --help.",
        ),
        (
            ["run", "--rat", "5", "--", "/bin/true"],
            "unknown option --rat (did you mean --rate?): see mem_profiler run --help.",
        ),
        (
            ["run", "--leak-chek", "/bin/true"],
            "unknown option --leak-chek (did you mean --leak-check?): see mem_profiler run --help.",
        ),
        (
            ["-p", "1", "--secnds", "1"],
            "unknown option --secnds (did you mean --seconds?): see mem_profiler --help.",
        ),
        (
            ["gate", "--max-peek", "1MiB", "--", "/bin/true"],
            "unknown option --max-peek (did you mean --max-peak?): see mem_profiler gate --help.",
        ),
    ],
)
def test_a_mistyped_option_is_named_with_the_nearest(args, said, tmp_path):
    proc = subprocess.run(
        [MEM_PROFILER, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert (proc.returncode, proc.stderr) == (2, f"mem_profiler: {said}\n")
    assert list(tmp_path.iterdir()) == []  # nothing was run
