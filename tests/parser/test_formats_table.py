"""A report format is a module and an entry in report/formats.py's FORMATS: a toy one,
built in a package of its own, is offered by mem_parser's help, checked with the others
and written, with no other change."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from support.synthetic_heaps import OURS

from mem_profiler.parser.report.formats import FORMATS

_TOY = '''
"""Counts of the profile as read, a line: the toy format."""


def render(r):
    stacks = r.profile.cur_objs
    total = r.table().total
    return f"stacks {len(stacks)} objects {int(stacks.sum())} total {total:.0f}\\n".encode()
'''

_LAUNCH = """
import sys
from mem_profiler.parser.report import formats

toy = formats.Format("toy", "--toy", "Counts of the profile.", "toy_reports.counts")
kept = formats.Format(
    "kept", "--kept", "Counts of the profile, to PATH.", "toy_reports.counts", to_file=True
)
formats.FORMATS = formats.FORMATS + (toy, kept)
from mem_profiler.cmd import mem_parser

mem_parser.main(sys.argv[1:])
"""


@pytest.fixture
def toy_parser(tmp_path):
    """mem_parser with the toy formats added to FORMATS, as a function of its arguments."""
    package = tmp_path / "toy_reports"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "counts.py").write_text(textwrap.dedent(_TOY))
    heap = tmp_path / "p.heap"
    heap.write_text(OURS)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", _LAUNCH, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
            timeout=120,
        )

    return run, heap


def test_a_new_format_is_in_the_help_and_the_checks(toy_parser):
    run, _ = toy_parser
    shown = run("--help")
    assert shown.returncode == 0, shown.stderr
    assert "--toy  " in shown.stdout and "Counts of the profile." in shown.stdout
    assert "--kept PATH" in shown.stdout
    said = " ".join(shown.stdout.split())
    assert "one of -t, -s, --collapsed, --json or --toy goes to -o OUT" in said
    assert "--pprof PATH, --jeprof PATH and --kept PATH write their own files" in said
    two = run("-f", "p.heap", "-p", "/bin/true", "--allow-mismatch", "-t", "--toy")
    assert two.returncode == 2 and "choose one output" in two.stderr
    assert "--json or --toy (-t, the default)" in two.stderr


def test_a_new_format_writes_what_its_render_makes(toy_parser, tmp_path):
    run, heap = toy_parser
    args = ("-f", str(heap), "-p", "/bin/true", "--allow-mismatch")
    toy = run(*args, "--toy")
    assert toy.returncode == 0, toy.stderr
    # OURS holds two stacks of 100 and 20 live objects; the table's total is --json's
    total = json.loads(run(*args, "--json").stdout)["total"]
    assert toy.stdout == f"stacks 2 objects 120 total {total:.0f}\n"
    kept = tmp_path / "kept.txt"
    both = run(*args, "-t", "--kept", str(kept))
    assert both.returncode == 0, both.stderr
    assert both.stdout.startswith("Total:") and kept.read_text() == toy.stdout


def test_every_format_names_a_module_with_a_render():
    import importlib

    assert len({f.name for f in FORMATS}) == len({f.option for f in FORMATS}) == len(FORMATS)
    for fmt in FORMATS:
        assert callable(importlib.import_module(fmt.module).render), fmt.name
