"""`mem_profiler`: capture a running process, run a program under the sampler, list
capturable processes."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn, TypedDict, Unpack

import click
from click.core import ParameterSource

from mem_profiler.cmd import cli_input
from mem_profiler.cmd.cli_input import (
    DEPTH,
    DEVICE_RATE_HELP,
    LOG_FILE_BYTES,
    LOG_FILES,
    PID,
    RATE,
    SECONDS,
    Command,
    FiniteFloatRange,
    capture_options,
    push_options,
    push_settings_of,
    run_command,
)
from mem_profiler.cmd.gate import SUPPRESSIONS_HELP, check_leaks_at_exit, gate
from mem_profiler.control import defaults
from mem_profiler.control.launch import LaunchError, run_profiled
from mem_profiler.control.sampler_lib import SamplerNotBuilt, library_path
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.core import progress
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.units import format_mib
from mem_profiler.push.settings import AGENT_MAX_STACKS, PushSettings
from mem_profiler.top.order import SORT_KEYS

if TYPE_CHECKING:
    from mem_profiler.control.control_block import Status
    from mem_profiler.push.sender import Tally

# The control block and its controller (cffi), the push's sender (ssl, http) and the
# parser (numpy) are imported by the commands that use them: `run` pays for none of
# them on every call.

PROG = "mem_profiler"
MODE_HELP = (
    "log: also write the event log of sampled allocations and frees, a timeline "
    "every 100 ms and the program's marks (<prefix><pid>.<seq>.<k>.memlog)."
)


class PushOptions(TypedDict):
    """push_options' values."""

    push_url: str | None
    push_every: float
    push_protocol: str | None
    labels: tuple[str, ...]
    push_headers: tuple[str, ...]
    push_auth_file: str | None


class CaptureOptions(PushOptions):
    """The options of `mem_profiler` itself, which capture a running process; None where
    not given."""

    pid: int | None
    seconds: float | None
    rate: int | None
    device_rate: int | None
    prefix: str | None
    depth: int | None
    mode: str | None
    attach: bool | None


def view_rate_option(which: str) -> Callable[[Command], Command]:
    """-c of a command that opens windows in idle processes to read them."""
    return click.option(
        "-c",
        "--rate",
        default=defaults.RATE,
        show_default=True,
        type=RATE,
        help=f"Mean bytes between samples in {which} (a window open already keeps its own).",
    )


def fail(message: str, code: int = 2) -> NoReturn:
    cli_input.fail(PROG, message, code)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-p", "--pid", type=PID, help="Process to capture (default: your only capturable one)."
)
@click.option(
    "-s",
    "--seconds",
    type=SECONDS,
    help="Length of the capture window; Ctrl-C ends it early.  [default: 60]",
)
@click.option(
    "-c",
    "--rate",
    type=RATE,
    help=f"Mean bytes between samples; 1 records every allocation.  [default: {defaults.RATE}]",
)
@click.option(
    "--device-rate", type=RATE, help=f"{DEVICE_RATE_HELP}  [default: {defaults.DEVICE_RATE}]"
)
@click.option(
    "-o",
    "--output",
    "prefix",
    help=f"Path prefix of the .heap files.  [default: {defaults.PREFIX}]",
)
@click.option("-d", "--depth", type=DEPTH, help=f"Frames per stack. [default: {defaults.DEPTH}]")
@click.option("--mode", type=click.Choice(["table", "log"]), help=MODE_HELP + "  [default: table]")
@click.option(
    "--attach",
    is_flag=True,
    default=None,
    help="Load the sampler into -p PID if it was started without it (ptrace; "
    "asked on a terminal when not given).",
)
@push_options()
@click.pass_context
def cli(ctx: click.Context, **capture: Unpack[CaptureOptions]) -> None:
    """Sampling heap profiler for Linux programs.

    \b
    mem_profiler -p PID -s 60 -c 1024 -o /tmp/svc_    capture 60 s of a running process
    mem_profiler -p PID --attach -s 60                the same, started without the sampler
    mem_profiler detach -p PID                        put an attached process back as it was
    mem_profiler dump -p PID                          write an open window's files, keep it open
    mem_profiler top -p PID                           live view: heaps, RSS, top stacks
    mem_profiler run [-c RATE] -- CMD ARGS...         run a program under the sampler
    mem_profiler -p PID --push URL                    push its profiles to a backend
    mem_profiler agent --push URL                     push every process that has the sampler
    mem_profiler list                                 processes that can be captured
    """
    given = [n for n in capture if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE]
    if ctx.invoked_subcommand is not None:
        if given:
            fail(
                f"-p/-s/-c/-o/-d capture a running process; `{ctx.invoked_subcommand}` "
                "takes its own options after its name"
            )
        return
    push = push_settings_of(capture)
    if push is None and any(n.startswith(("push_", "labels")) for n in given):
        fail("--push-every, --push-protocol, --label and --push-header go with --push URL")
    from mem_profiler.control.control_block import AttachError, ControlError
    from mem_profiler.control.controller import capture_window, has_sampler, only_target

    try:
        pid = capture["pid"] if capture["pid"] is not None else only_target()
        if not has_sampler(pid) and wants_attach(pid, capture["attach"]):
            load_sampler(pid)
        if push is not None:
            _push_process(pid, push, capture["rate"] or defaults.RATE, capture["seconds"])
            return
        settings = CaptureSettings(
            rate=capture["rate"] or defaults.RATE,
            device_rate=capture["device_rate"] or defaults.DEVICE_RATE,
            depth=capture["depth"] or defaults.DEPTH,
            prefix=capture["prefix"] or defaults.PREFIX,
            log=capture["mode"] == "log",
        )
        result = capture_window(
            pid,
            capture["seconds"] or 60.0,
            settings,
            progress=show_progress if sys.stderr.isatty() else None,
        )
    except (ControlError, LaunchError, AttachError) as err:
        if sys.stderr.isatty():
            click.echo("", err=True)
        fail(str(err), 2 if isinstance(err, LaunchError) else 1)
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo("succeeded in collecting memory data!  " + "  ".join(result.paths))
    say_failure_files(result.failure_paths)
    if result.status.own_malloc:
        click.echo(f"mem_profiler: {result.status.own_malloc}", err=True)
    if result.status.dropped_samples:
        click.echo(
            f"mem_profiler: {result.status.dropped_samples:,} samples were dropped (a "
            "table of the sampler was full): each report says what is missing",
            err=True,
        )


def say_failure_files(paths: Sequence[str | os.PathLike[str]]) -> None:
    """The files written as the program ran out of device memory, each on a line."""
    for path in paths:
        click.echo(f"mem_profiler: out of device memory; what was live then: {path}", err=True)


def _push_process(pid: int, push: PushSettings, rate: int, seconds: float | None) -> None:
    """Pushes pid's profiles until Ctrl-C, SIGTERM, the process's end or `seconds`."""
    from mem_profiler.push.session import ending_signals, push_process  # numpy, the parser

    say(f"pushing process {pid} to {push.url} every {push.every:g} s (Ctrl-C ends)")
    with ending_signals() as ended:
        if seconds is not None:
            timer = threading.Timer(seconds, ended.set)
            timer.daemon = True
            timer.start()
        tally = push_process(pid, push, rate, say, ended)
    _pushed(tally)


def _pushed(tally: Tally) -> None:
    """The push's summary; exit 1 when profiles were dropped."""
    say(tally.summary())
    if tally.dropped:
        sys.exit(1)


def say(message: str) -> None:
    cli_input.say(PROG, message)


def wants_attach(pid: int, attach_flag: bool | None) -> bool:
    """--attach, or yes at the question on a terminal; no (and the error that follows
    says how to start with the sampler) otherwise."""
    if attach_flag is not None or not sys.stdin.isatty():
        return bool(attach_flag)
    return click.confirm(
        f"process {pid} was started without the sampler: load it now "
        "(ptrace; allocations made before are not seen)?",
        default=False,
        err=True,
    )


def load_sampler(pid: int) -> None:
    """--attach: the sampler injected into pid, its stages shown on a terminal while it
    takes more than a second (a process of many threads, stopped one by one)."""
    from mem_profiler.control.controller import attach

    with progress.shown("mem_profiler"):
        attach(pid)
    click.echo(f"mem_profiler: loaded the sampler into process {pid}", err=True)


def show_progress(elapsed: float, status: Status) -> None:
    live = "  ".join(
        f"{heap} ≈ {format_mib(n)}"
        for heap, n in status.heap_live_bytes.items()
        if n or heap == "host"
    )
    dropped = f"   {status.dropped_samples:,} dropped" if status.dropped_samples else ""
    click.echo(
        f"\r  {elapsed:6.1f} s   {status.live_samples:,} live samples{dropped}   live: {live}   ",
        nl=False,
        err=True,
    )


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@capture_options(defaults.RATE, "Mean bytes between samples; 1 records every allocation.")
@click.option(
    "-o",
    "--output",
    "prefix",
    default=defaults.PREFIX,
    show_default=True,
    help="Path prefix of the .heap files: <prefix><pid>.<seq>.heap "
    "(and <prefix><pid>.<seq>.<heap>.heap for each device heap the program used)",
)
@click.option(
    "--mode",
    type=click.Choice(["table", "log"]),
    default="table",
    show_default=True,
    help=MODE_HELP,
)
@click.option(
    "--log-cap",
    default=defaults.LOG_FILE_BYTES,
    show_default=True,
    type=LOG_FILE_BYTES,
    help="Bytes per log file; past it the log goes on in the next file.",
)
@click.option(
    "--log-files",
    default=defaults.LOG_FILES,
    show_default=True,
    type=LOG_FILES,
    help="Log files kept; the oldest beyond this is deleted.",
)
@click.option(
    "--leak-check",
    is_flag=True,
    help="Judge what is still allocated at exit and nothing points to, as LeakSanitizer "
    "does: exit 1 when it is more than --leak-threshold, with a report of the stacks. "
    "Records every allocation unless -c is given.",
)
@click.option(
    "--leak-threshold",
    default="0",
    show_default=True,
    metavar="[HEAP:]SIZE",
    help="Bytes allowed still allocated at exit (KiB, MiB, ... or KB, MB, ...).",
)
@click.option("--suppressions", metavar="FILE", help="With --leak-check: " + SUPPRESSIONS_HELP)
@click.option(
    "--idle",
    is_flag=True,
    help="Load the sampler without capturing; capture later with mem_profiler -p.",
)
@click.option(
    "--follow-fork",
    is_flag=True,
    help="Also profile the children CMD forks without exec (each writes files "
    "of its own, which name the parent).",
)
@click.option(
    "--follow-children",
    is_flag=True,
    help="Also profile the programs CMD executes, and every fork.",
)
@click.option(
    "--unwind",
    type=click.Choice(["hybrid", "libunwind", "fp"]),
    default="hybrid",
    show_default=True,
    help="Stack unwinder: hybrid follows each object's "
    ".eh_frame rules, cached per code address; libunwind gives the same stacks, "
    "slower; fp alone loses callers of code built without frame pointers.",
)
@push_options()
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    rate: int,
    device_rate: int,
    prefix: str,
    depth: int,
    stack_memory: int,
    mode: str,
    log_cap: int,
    log_files: int,
    leak_check: bool,
    leak_threshold: str,
    suppressions: str | None,
    idle: bool,
    follow_fork: bool,
    follow_children: bool,
    unwind: str,
    command: tuple[str, ...],
    **push_given: Unpack[PushOptions],
) -> None:
    """Run COMMAND with the sampler loaded, capturing from its first allocation.

    The process COMMAND ends up as (through exec, as a shim or wrapper script
    does) writes <prefix><pid>.0001.heap when it exits; the exit status of
    COMMAND is passed through.
    """
    if command[0].startswith("-"):  # what the options before `--` did not know
        cli_input.unknown_option(click.get_current_context(), command[0])
    if suppressions and not leak_check:
        fail("--suppressions says what --leak-check leaves out: give both")
    push = push_settings_of(push_given)
    if push is not None and (idle or leak_check):
        fail("--push follows the window run opens: not with --idle or --leak-check")
    settings = CaptureSettings(
        rate=rate,
        device_rate=device_rate,
        depth=depth,
        stack_memory=stack_memory,
        prefix=prefix,
        capture=not idle,
        log=mode == "log",
        log_cap=log_cap,
        log_files=log_files,
        follow_children=follow_children,
        follow_fork=follow_fork,
        unwinder=unwind,
    )
    if leak_check:
        if click.get_current_context().get_parameter_source("rate") is ParameterSource.DEFAULT:
            settings.rate = 1  # what a pointer may pass through is known only of every block
        check_leaks_at_exit(list(command), leak_threshold, suppressions, settings)
    pusher = None
    if push is not None:
        from mem_profiler.push.session import RunPusher  # numpy, the parser

        pusher = RunPusher(push, rate, say)
    try:
        result = run_profiled(list(command), settings, pusher.started if pusher else None)
    except LaunchError as err:
        fail(str(err), 127 if str(err).startswith("cannot run") else 2)
    except SamplerNotBuilt as err:
        fail(str(err))
    for path in result.heap_files:
        click.echo(f"mem_profiler: wrote {path}", err=True)
    say_failure_files(result.failure_files)
    children = sorted(set(result.files_by_process()) - {result.pid})
    if children:
        click.echo(
            f"mem_profiler: process{'es' if len(children) > 1 else ''} "
            f"{', '.join(map(str, children))}, children of {command[0]} "
            f"(process {result.pid}), wrote files of their own",
            err=True,
        )
    for failure in result.failures:
        click.echo(f"mem_profiler: {failure}", err=True)
    if missing := result.missing_profile(command[0], idle):
        click.echo(f"mem_profiler: {missing}", err=True)
    if pusher is not None:
        say(pusher.finish(result.files_by_process().get(result.pid, {})).summary())
    # A profile that could not be written fails the run, even where the program did not.
    sys.exit(result.exit_code or (1 if result.failures else 0))


@cli.command(name="list")
def list_() -> None:
    """Processes that have the sampler loaded: pid, user, state, command line, and the
    last file each wrote (where a window went whose controller is gone)."""
    from mem_profiler.control.controller import list_targets

    targets = list_targets()
    user = max([len("USER"), *(len(t.user) for t in targets)])
    state = max([len("STATE"), *(len(t.state) for t in targets)])
    click.echo(f"{'PID':>8}  {'USER':<{user}}  {'STATE':<{state}}  COMMAND")
    for t in targets:
        click.echo(f"{t.pid:>8}  {t.user:<{user}}  {t.state:<{state}}  {t.cmdline}")
        if t.last_dump:
            click.echo(f"{'':>8}  last dump: {t.last_dump}")


@cli.command(name="detach")
@click.option("-p", "--pid", type=PID, required=True, help="An attached process.")
def detach_(pid: int) -> None:
    """Close PID's window if one is open and put back every GOT slot the sampler
    redirected; the sampler stays loaded, idle, for the next capture."""
    from mem_profiler.control.control_block import ControlError
    from mem_profiler.control.controller import detach

    try:
        before, after, files = detach(pid)
    except ControlError as err:
        fail(str(err), 1)
    for path in files:
        click.echo(f"mem_profiler: wrote {path}", err=True)
    undone = ["closed its window"] if before.capturing else []
    if (restored := before.redirected_slots - after.redirected_slots) > 0:
        undone.append(f"put back the {restored} calls the sampler had redirected to itself")
    left = f" ({after.redirected_slots} calls still redirected)" if after.redirected_slots else ""
    click.echo(
        f"detached from process {pid}: {' and '.join(undone) or 'nothing to undo'}{left};"
        f" the sampler stays loaded, idle, until `mem_profiler -p {pid}` captures again"
    )


@cli.command(name="dump")
@click.option("-p", "--pid", type=PID, required=True, help="A process with a window open.")
def dump_(pid: int) -> None:
    """Write the files of PID's open window, whoever opened it (mem_profiler run,
    MEMPROF_CAPTURE=1, -p), and keep it open: each dump holds everything since the
    window opened. Prints their paths."""
    from mem_profiler.control.control_block import ControlError
    from mem_profiler.control.controller import dump_window

    try:
        files = dump_window(pid)
    except ControlError as err:
        fail(str(err), 1)
    click.echo("\n".join(files))


@cli.command()
@click.option("-p", "--pid", type=PID, help="Process to show (default: your only capturable one).")
@view_rate_option("the window top opens")
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=FiniteFloatRange(0.1, 3600),
    help="Seconds between refreshes.",
)
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=1),
    metavar="COUNT",
    help="Print COUNT refreshes as text, then exit (as top -b does; also without "
    "-n when not on a terminal).",
)
@click.option("--heap", type=click.Choice(HEAPS), help="Show one heap.  [default: every heap]")
@click.option(
    "--sort",
    type=click.Choice(SORT_KEYS),
    default="inuse",
    show_default=True,
    help="Order of the stacks: bytes in use, allocated per second, or growth of "
    "in use per second (keys i, a, g on the screen).",
)
@click.option(
    "--attach",
    "attach_flag",
    is_flag=True,
    default=None,
    help="Load the sampler into -p PID if it was started without it (ptrace; "
    "asked on a terminal when not given).",
)
def top(
    pid: int | None,
    rate: int,
    interval: float,
    count: int | None,
    heap: str | None,
    sort: str,
    attach_flag: bool | None,
) -> None:
    """Live view of a running process: its heaps' totals and RSS, and the stacks holding
    the most memory, with their growth and allocation rate over the last interval.

    In a process with the sampler idle, top opens a window that it closes when it ends
    (q or Ctrl-C), leaving the process idle; killed, that window closes a few seconds
    later by itself. A window open already (mem_profiler run) is only read, and stays
    open.
    """
    from mem_profiler.control.control_block import AttachError, ControlError
    from mem_profiler.control.controller import has_sampler, only_target
    from mem_profiler.top.refresh import Settings  # numpy and the parser: top's alone
    from mem_profiler.top.session import run_top

    try:
        pid = pid if pid is not None else only_target()
        if not has_sampler(pid) and wants_attach(pid, attach_flag):
            load_sampler(pid)
        run_top(
            Settings(pid, rate, interval, count, heap, sort),
            batch=count is not None or not sys.stdout.isatty(),
        )
    except (ControlError, AttachError) as err:
        fail(str(err), 1)


@cli.command()
@view_rate_option("the windows the agent opens")
@click.option(
    "--max-stacks",
    default=AGENT_MAX_STACKS,
    show_default=True,
    type=click.IntRange(1, 1 << 31),
    help="The most stacks kept of one process's window (and 32 call-tree nodes a stack):"
    " a process past it is let go, said, and tried again later.",
)
@push_options(required=True)
def agent(rate: int, max_stacks: int, **push_given: Unpack[PushOptions]) -> None:
    """Push every process of this host that has the sampler loaded (a preload of the
    whole system or of a service) and that this user may capture: found as they start,
    let go as they end, until Ctrl-C or SIGTERM, which push once more. In an idle process
    the agent opens a window of its own, closed when it ends. What it reads of one
    process is bounded (--max-stacks), whatever that process writes."""
    from mem_profiler.push.session import ending_signals, run_agent  # numpy, the parser

    push = push_settings_of(push_given)
    assert push is not None  # --push is required
    say(f"pushing every process with the sampler to {push.url} every {push.every:g} s")
    with ending_signals() as ended:
        tally = run_agent(push, rate, max_stacks, say, ended)
    _pushed(tally)


@cli.command()
def lib() -> None:
    """Print the path of libmemprof.so, for LD_PRELOAD."""
    try:
        click.echo(library_path())
    except SamplerNotBuilt as err:
        fail(str(err))


cli.add_command(gate)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input becomes one line on stderr and exit status 2."""
    run_command(cli, PROG, argv)


if __name__ == "__main__":
    main()
