"""mem_parser: symbolize a .heap file against the binary that ran and report it."""

from __future__ import annotations

import functools
import os
import re
import sys

import click

from mem_profiler.cmd.cli_input import FRACTION, run_command, say
from mem_profiler.cmd.log_report import add_log_options
from mem_profiler.parser.atomic import write_file
from mem_profiler.parser.capture_files import select_files
from mem_profiler.parser.errors import UserError
from mem_profiler.parser.heaps import HEAPS
from mem_profiler.parser.reports import (
    FILE_FORMATS,
    STREAM_FORMATS,
    Request,
    load,
    render,
    render_heaps_text,
)
from mem_profiler.parser.sampling import SAMPLE_INDEXES
from mem_profiler.parser.symbolize import recorded_program

PROG = "mem_parser"
_ONE_OUTPUT = ("choose exactly one output for -o/stdout: -t (text table), -s (SVG call graph),"
               " --collapsed or --json; --flame PATH and --pprof PATH write files of their own"
               " and may be added to it or given alone.")


def _regex(ctx: click.Context, param: click.Parameter, value: str | None) -> re.Pattern | None:
    if value is None:
        return None
    try:
        return re.compile(value)
    except re.error as e:
        raise click.BadParameter(f"{value!r} is not a valid regular expression ({e})") from None


def _path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and value.startswith("-"):
        raise click.BadParameter(f"expected a file name, found {value!r} (write ./{value}"
                                 " for a file named so)")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=(
    "Outputs: one of -t, -s, --collapsed, --json goes to -o OUT or stdout; --flame PATH"
    " and --pprof PATH write their own files, alone or beside it (e.g. -t --pprof"
    " p.pb.gz). --focus, --ignore and --base apply to every output."))
@click.option("-p", "binary", metavar="BIN", help="The program that ran, where it is not at the"
              " path the file records (a copy elsewhere); by default that path, checked by"
              " build-id.")
@click.option("-f", "heap_files", required=True, multiple=True, metavar="FILE",
              help="The .heap file to read, or a capture's prefix (/tmp/svc_4242.0001: its "
              "host and device heaps). Several with -t: the heaps side by side.")
@click.option("--heap", type=click.Choice(HEAPS), help="Of the files given, the one of this heap.")
@click.option("-t", "text", is_flag=True, help="Flat/cum text table, as jeprof --text.")
@click.option("-s", "svg", is_flag=True, help="SVG call graph, drawn by graphviz dot.")
@click.option("--collapsed", is_flag=True,
              help="Collapsed stacks (`root;...;leaf value`) for flamegraph.pl or speedscope.")
@click.option("--json", "json_", is_flag=True, help="The flat/cum table and metadata as JSON.")
@click.option("--flame", metavar="PATH", callback=_path,
              help="Write an interactive HTML flame graph to PATH.")
@click.option("--pprof", metavar="PATH", callback=_path,
              help="Write gzipped profile.proto to PATH (go tool pprof, and pprof's UIs).")
@click.option("-o", "output", metavar="OUT", help="Write to OUT instead of stdout.")
@click.option("--inuse_space", is_flag=True, help="Live bytes at the dump (default).")
@click.option("--inuse_objects", is_flag=True, help="Live objects at the dump.")
@click.option("--alloc_space", is_flag=True, help="Bytes allocated in the window.")
@click.option("--alloc_objects", is_flag=True, help="Objects allocated in the window.")
@click.option("--base", metavar="OLD", help="Report FILE - OLD (another .heap of the same"
              " program): growth is positive, shrinkage negative.")
@click.option("--lines", is_flag=True, help="One node per source line (function file:line).")
@click.option("--full-names", is_flag=True, help="Names in full: C++ with arguments and template"
              " arguments, Rust with generics and hashes (default: short names, as jeprof).")
@click.option("--native", is_flag=True, help="Python programs: every native frame (default:"
              " the interpreter's own frames among the Python frames are folded).")
@click.option("--nodecount", type=click.IntRange(min=1), metavar="N",
              help="Show N rows (-t, --json) or nodes (-s, default 80).")
@click.option("--nodefraction", type=FRACTION, default=0.005, show_default=True,
              metavar="F", help="-s: drop nodes whose cum is below F of the total.")
@click.option("--edgefraction", type=FRACTION, default=0.001, show_default=True,
              metavar="F", help="-s: drop edges whose weight is below F of the total.")
@click.option("--focus", metavar="RE", callback=_regex,
              help="Keep only stacks through a function matching the regular expression RE.")
@click.option("--ignore", metavar="RE", callback=_regex,
              help="Drop stacks through a function matching the regular expression RE.")
@click.option("--allow-mismatch", is_flag=True,
              help="Symbolize even if BIN is not the build that ran (a warning, not an error).")
def cli(binary: str, heap_file: str, output: str | None, flame: str | None, pprof: str | None,
        lines: bool, full_names: bool, base: str | None, allow_mismatch: bool,
        native: bool, nodecount: int | None,
        nodefraction: float, edgefraction: float, focus: re.Pattern | None,
        ignore: re.Pattern | None, **flags: bool) -> None:
    """Report a .heap file: mem_parser [-p BIN] -f FILE -t|-s|--collapsed|--json [-o OUT]."""
    chosen = [name for name in SAMPLE_INDEXES if flags[name]]
    if len(chosen) > 1:
        raise UserError(f"choose one sample index, not {' and '.join('--' + c for c in chosen)}.")
    streams = [fmt for fmt, flag in zip(STREAM_FORMATS, ("text", "svg", "collapsed", "json_"),
                                        strict=True) if flags[flag]]
    files = [(fmt, path) for fmt, path in zip(FILE_FORMATS, (flame, pprof), strict=True) if path]
    if len(streams) > 1 or not streams and not files:
        raise UserError(_ONE_OUTPUT)
    if output is not None and not streams:
        raise UserError(f"-o {output} is for -t, -s, --collapsed or --json; --flame and"
                        " --pprof take their own path.")

    request = Request(binary=binary, heap_file=heap_file, base=base,
                      index=chosen[0] if chosen else "inuse_space", lines=lines,
                      full_names=full_names, file_lines=pprof is not None,
                      allow_mismatch=allow_mismatch, native=native, focus=focus,
                      ignore=ignore, nodecount=nodecount, nodefraction=nodefraction,
                      edgefraction=edgefraction)
    sym = load(request)
    for warning in sym.warnings:
        say(PROG, f"warning: {warning}")
    for fmt, path in [(fmt, output) for fmt in streams] + files:
        _write(path, render(fmt, sym, request))


add_log_options(cli)


def _select_heap(command: click.Command) -> None:
    """-f (repeatable, or a prefix) and --heap become the one file the reports read;
    several heaps go side by side in the text table."""
    report = command.callback
    assert report is not None

    @functools.wraps(report)
    def callback(heap_files: tuple[str, ...], heap: str | None, **params) -> None:
        chosen = select_files(list(heap_files), heap)
        if params["binary"] is None:
            params["binary"], build_id = recorded_program(chosen[0][1])
            say(PROG, f"reading {params['binary']}, the program that ran"
                + (f" (build-id {build_id})" if build_id else ""))
        if len(chosen) == 1:
            report(heap_file=chosen[0][1], **params)
            return
        others = [name for name in ("svg", "collapsed", "json_", "flame", "pprof", "base")
                  if params[name]]
        if not params["text"] or others:
            raise UserError(f"{len(chosen)} heaps ({', '.join(h for h, _ in chosen)}) go side by"
                            " side only in -t; for the other reports choose one with --heap.")
        index = next((i for i in SAMPLE_INDEXES if params[i]), "inuse_space")
        requests = [(name, Request(binary=params["binary"], heap_file=path, index=index,
                                   allow_mismatch=params["allow_mismatch"],
                                   full_names=params["full_names"],
                                   native=params["native"], nodecount=params["nodecount"]))
                    for name, path in chosen]
        _write(params["output"], render_heaps_text(requests))

    command.callback = callback


_select_heap(cli)


def _write(output: str | None, content: bytes) -> None:
    """Write to stdout, or atomically to the file `output`."""
    if output is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    if os.path.isdir(output):
        raise UserError(f"{output} is a directory; give a file name.")
    write_file(output, content)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    run_command(cli, PROG, argv)


if __name__ == "__main__":
    main()
