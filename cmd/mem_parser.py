"""mem_parser: symbolize a .heap file against the binary that ran and report it."""

from __future__ import annotations

import os
import sys

import click

from mem_profiler.parser.aggregate import aggregate
from mem_profiler.parser.atomic import atomic_open
from mem_profiler.parser.errors import UserError
from mem_profiler.parser.heapfile import read_heap
from mem_profiler.parser.report_text import format_text
from mem_profiler.parser.sampling import SAMPLE_INDEXES
from mem_profiler.parser.symbolize import symbolize

PROG = "mem_parser"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-p", "binary", required=True, metavar="BIN", help="The program that ran.")
@click.option("-f", "heap_file", required=True, metavar="FILE", help="The .heap file to read.")
@click.option("-t", "text", is_flag=True, help="Flat/cum text table, as jeprof --text.")
@click.option("-s", "svg", is_flag=True, help="SVG call graph.")
@click.option("-o", "output", metavar="OUT", help="Write to OUT instead of stdout.")
@click.option("--inuse_space", is_flag=True, help="Live bytes at the dump (default).")
@click.option("--inuse_objects", is_flag=True, help="Live objects at the dump.")
@click.option("--alloc_space", is_flag=True, help="Bytes allocated in the window.")
@click.option("--alloc_objects", is_flag=True, help="Objects allocated in the window.")
@click.option("--lines", is_flag=True, help="One node per source line (function file:line).")
@click.option("--nodecount", type=click.IntRange(min=1), metavar="N", help="Show N rows.")
@click.option("--allow-mismatch", is_flag=True,
              help="Symbolize even if BIN is not the build that ran (a warning, not an error).")
def cli(binary: str, heap_file: str, text: bool, svg: bool, output: str | None, lines: bool,
        nodecount: int | None, allow_mismatch: bool, **indexes: bool) -> None:
    """Report a .heap file: mem_parser -p BIN -f FILE -t [-o OUT]."""
    chosen = [name for name in SAMPLE_INDEXES if indexes[name]]
    if len(chosen) > 1:
        raise UserError(f"choose one sample index, not {' and '.join('--' + c for c in chosen)}.")
    if text == svg:
        raise UserError("choose exactly one output: -t (text table) or -s (SVG call graph).")
    if svg:
        raise UserError("SVG call graphs (-s) arrive in a later release; use -t for the text"
                        " table.")

    profile = read_heap(heap_file)
    sym = symbolize(profile, binary, lines=lines, allow_mismatch=allow_mismatch)
    for warning in sym.warnings:
        click.echo(f"{PROG}: warning: {warning}", err=True)
    table = aggregate(sym, chosen[0] if chosen else "inuse_space", lines=lines)
    report = format_text(table, nodecount)
    _write(output, report)


def _write(output: str | None, content: str) -> None:
    """Write to stdout, or atomically to the file `output`."""
    if output is None:
        sys.stdout.write(content)
        sys.stdout.flush()
        return
    if os.path.isdir(output):
        raise UserError(f"-o {output} is a directory; give a file name.")
    try:
        with atomic_open(output) as f:
            f.write(content)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror or e}.") from None


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.UsageError as e:
        _fail(f"{e.format_message().rstrip('.')} (see {PROG} --help).")
    except click.ClickException as e:
        _fail(e.format_message())
    except UserError as e:
        _fail(str(e))
    except click.Abort:
        sys.exit(1)
    except BrokenPipeError:
        # the reader of stdout went away (| head); exit quietly as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _fail(message: str) -> None:
    click.echo(f"{PROG}: {message}", err=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
