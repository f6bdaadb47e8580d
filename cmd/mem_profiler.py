"""`mem_profiler`: run a program under the sampler (more verbs arrive with later issues)."""

from __future__ import annotations

import sys

import click

from mem_profiler import SamplerNotBuilt, library_path
from mem_profiler.launch import DEFAULT_PREFIX, CaptureSettings, LaunchError, run_profiled


def fail(message: str, code: int = 2) -> None:
    click.echo(f"mem_profiler: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Sampling heap profiler for Linux programs."""


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-c", "--rate", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Mean bytes between samples; 1 records every allocation.")
@click.option("-o", "--output", "prefix", default=DEFAULT_PREFIX, show_default=True,
              help="Path prefix of the .heap files: <prefix><pid>.<seq>.heap")
@click.option("-d", "--depth", default=64, show_default=True, type=click.IntRange(1, 128),
              help="Frames kept per stack.")
@click.option("--follow-children", is_flag=True,
              help="Also profile programs that CMD executes.")
@click.option("--unwind", type=click.Choice(["hybrid", "libunwind", "fp"]), default="hybrid",
              show_default=True, help="Stack unwinder: hybrid walks frame pointers and hands "
              "over to libunwind where code has none; fp alone is fastest but loses callers "
              "of code built without frame pointers.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(rate: int, prefix: str, depth: int, follow_children: bool, unwind: str,
        command: tuple[str, ...]) -> None:
    """Run COMMAND with the sampler loaded, capturing from its first allocation.

    Each profiled process writes <prefix><pid>.0001.heap when it exits; the
    exit status of COMMAND is passed through.
    """
    settings = CaptureSettings(rate=rate, depth=depth, prefix=prefix,
                               follow_children=follow_children, unwinder=unwind)
    try:
        result = run_profiled(list(command), settings)
    except LaunchError as err:
        fail(str(err), 127 if str(err).startswith("cannot run") else 2)
    except SamplerNotBuilt as err:
        fail(str(err))
    for path in result.heap_files:
        click.echo(f"mem_profiler: wrote {path}", err=True)
    if not result.heap_files:
        click.echo(f"mem_profiler: {command[0]} wrote no profile (it ended without running "
                   "exit handlers, e.g. killed or _exit)", err=True)
    sys.exit(result.exit_code)


@cli.command()
def lib() -> None:
    """Print the path of libmemprof.so, for LD_PRELOAD."""
    try:
        click.echo(library_path())
    except SamplerNotBuilt as err:
        fail(str(err))


def main() -> None:
    cli(prog_name="mem_profiler")


if __name__ == "__main__":
    main()
