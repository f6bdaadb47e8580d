"""What the command lines accept, and how they refuse the rest: the types of their numbers
(finite, within what the sampler and the parser can hold) and the one line, exit status
2, that answers bad input of any kind."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import click

from mem_profiler.control import defaults
from mem_profiler.core import progress
from mem_profiler.core.errors import BudgetError, UserError
from mem_profiler.core.escape import visible
from mem_profiler.core.input_files import MAX_PROFILE_BYTES
from mem_profiler.core.units import parse_size
from mem_profiler.push.backends import BACKENDS
from mem_profiler.push.settings import AUTH_ENV, DEFAULT_EVERY_S, PushSettings, push_settings


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses nan, which passes every comparison."""

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number: float = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class Size(click.ParamType):
    """A number of bytes, with an optional unit (units.parse_size)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_size(value)
        except BudgetError as e:
            self.fail(str(e), param, ctx)


PID = click.IntRange(1, 2**31 - 1)  # pid_t
# The sampler's rates are uint64; beyond 2^63 bytes between samples nothing is sampled.
RATE = click.IntRange(1, 2**63)
DEPTH = click.IntRange(1, defaults.MAX_DEPTH)
SECONDS = FiniteFloatRange(0, 30 * 86400, min_open=True)  # a window of up to 30 days
LOG_FILE_BYTES = click.IntRange(4096, MAX_PROFILE_BYTES)  # what mem_parser reads of a file
LOG_FILES = click.IntRange(1, 2**32 - 1)  # the sampler's unsigned count
FRACTION = FiniteFloatRange(0, 1)
BYTES = Size()
# A time in ms whose ns fit in the event log's int64 times.
MILLISECONDS = FiniteFloatRange(0, (2**63 - 1) // 1_000_000)

DEVICE_RATE_HELP = (
    "Mean bytes between samples of the device and HAL heaps (CUDA, ACL, HAL); "
    "1 records every device allocation."
)
Command = TypeVar("Command", bound=Callable)


def capture_options(rate: int, rate_help: str) -> Callable[[Command], Command]:
    """-c, --device-rate, -d and --stack-memory with their defaults, as the commands that
    start a program under the sampler (run, gate) take them; -c's default is the
    command's."""
    options = (
        click.option("-c", "--rate", default=rate, show_default=True, type=RATE, help=rate_help),
        click.option(
            "--device-rate",
            default=defaults.DEVICE_RATE,
            show_default=True,
            type=RATE,
            help=DEVICE_RATE_HELP,
        ),
        click.option(
            "-d",
            "--depth",
            default=defaults.DEPTH,
            show_default=True,
            type=DEPTH,
            help="Frames kept per stack.",
        ),
        click.option(
            "--stack-memory",
            default=defaults.STACK_MEMORY,
            show_default=True,
            type=click.IntRange(1, defaults.STACK_MEMORY_LIMIT),
            metavar="MIB",
            help="Memory the sampler may take for the program's distinct stacks; past it, "
            "samples are dropped and the profile says how many.",
        ),
    )

    def decorate(command: Command) -> Command:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


PUSH_EVERY = FiniteFloatRange(0.5, 3600)


def _servers() -> str:
    """The servers BACKENDS push to, in words: `Pyroscope, Parca or OTLP`."""
    names = list(dict.fromkeys(b.title for b in BACKENDS))
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def push_options(required: bool = False) -> Callable[[Command], Command]:
    """--push URL and the options that go with it, as -p, run and agent take them."""
    options = (
        click.option(
            "--push",
            "push_url",
            required=required,
            metavar="URL",
            help=f"Push the profiles to a {_servers()} backend every --push-every seconds,"
            " and once more at the end.",
        ),
        click.option(
            "--push-every",
            type=PUSH_EVERY,
            default=DEFAULT_EVERY_S,
            show_default=True,
            metavar="SECONDS",
            help="Seconds between pushes.",
        ),
        click.option(
            "--push-protocol",
            type=click.Choice([b.protocol for b in BACKENDS]),
            help="The backend's protocol.  [default: told from the URL's path or port: "
            + ", ".join(f"{b.port} {b.protocol}" for b in BACKENDS if b.port)
            + "]",
        ),
        click.option(
            "--label",
            "labels",
            multiple=True,
            metavar="NAME=VALUE",
            help="A label of every series pushed, over the default ones (service_name: "
            "the program's name, host, pid, exe, build_id, heap, version); repeatable.",
        ),
        click.option(
            "--push-header",
            "push_headers",
            multiple=True,
            metavar="'NAME: VALUE'",
            help="A header of every push (e.g. 'X-Scope-OrgID: team1'); repeatable.",
        ),
        click.option(
            "--push-auth-file",
            metavar="FILE",
            help="A file of yours (mode 600) holding 'Bearer TOKEN' or 'Basic USER:PASSWORD' "
            f"for the backend; also read from ${AUTH_ENV}.",
        ),
    )

    def decorate(command: Command) -> Command:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def push_settings_of(options: Mapping[str, Any]) -> PushSettings | None:
    """The settings of push_options' values, None without --push; PushSettingsError."""
    if options["push_url"] is None:
        return None
    return push_settings(
        options["push_url"],
        options["push_protocol"],
        options["push_every"],
        options["labels"],
        options["push_headers"],
        options["push_auth_file"],
    )


def run_command(command: click.Command, prog: str, argv: list[str] | None) -> None:
    """Run a click command: usage errors and UserErrors become one line on stderr and exit
    status 2, as does running out of memory on an input too large for this machine."""
    try:
        command.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.NoSuchOption as e:
        import difflib

        # the names compared without their dashes, which every option shares
        names = {p.lstrip("-"): p for p in e.possibilities or []}
        near = difflib.get_close_matches(e.option_name.lstrip("-"), names, n=1, cutoff=0.5)
        hint = f" (did you mean {names[near[0]]}?)" if near else ""
        path = e.ctx.command_path if e.ctx is not None else prog
        fail(prog, f"unknown option {e.option_name}{hint}: see {path} --help.")
    except click.UsageError as e:
        fail(prog, f"{e.format_message().rstrip('.')} (see {prog} --help).")
    except click.ClickException as e:
        fail(prog, e.format_message())
    except UserError as e:
        fail(prog, str(e))
    except MemoryError:
        fail(prog, "out of memory: the input is too large for this machine's memory.")
    except click.Abort:
        sys.exit(1)
    except BrokenPipeError:
        # the reader of stdout went away (| head); exit quietly as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def unknown_option(ctx: click.Context, name: str) -> NoReturn:
    """Refuse `name` as an option of ctx's command that does not exist, as click refuses
    one, for a command that takes what follows its options as they are (run's COMMAND)."""
    options = [opt for param in ctx.command.params for opt in param.opts if opt.startswith("-")]
    raise click.NoSuchOption(name, possibilities=options, ctx=ctx)


def leave() -> NoReturn:
    """End a command's process once its work is done, what it wrote flushed, without the
    interpreter's teardown: freeing a large report's objects one by one only keeps its
    caller waiting."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        os._exit(1)  # as run_command exits when the reader of stdout went away
    os._exit(0)


def say(prog: str, message: str) -> None:
    """`message` on one line of stderr, its control characters escaped."""
    progress.clear()
    click.echo(f"{prog}: {visible(message)}", err=True)


def fail(prog: str, message: str, code: int = 2) -> NoReturn:
    """Say `message` and exit."""
    say(prog, message)
    sys.exit(code)
