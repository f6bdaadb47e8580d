"""Start a program with the sampler preloaded and collect the .heap files it writes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mem_profiler.control.settings import CaptureSettings
from mem_profiler.core.file_names import absolute_prefix, failure_prefix, heap_file_pattern
from mem_profiler.core.user_paths import open_folder


class LaunchError(RuntimeError):
    """The program could not be started as asked (one sentence for the user)."""


@dataclass
class RunResult:
    exit_code: int
    pid: int
    heap_files: list[Path] = field(default_factory=list)
    failure_files: list[Path] = field(default_factory=list)  # live as a device alloc failed
    failures: list[str] = field(default_factory=list)  # dumps not written, and why
    prefix: str = ""  # the capture's, naming the files

    def files_by_process(self) -> dict[int, dict[str, Path]]:
        """{pid: {heap: file}} of the files written: the command's own under self.pid,
        the others its children's (--follow-fork, --follow-children)."""
        pattern = heap_file_pattern(self.prefix)
        found: dict[int, dict[str, Path]] = {}
        for path in self.heap_files:
            if m := pattern.match(path.name):
                found.setdefault(int(m[1]), {})[m[3] or "host"] = path
        return found

    def missing_profile(self, command: str, idle: bool) -> str | None:
        """Why `command` wrote no profile, where it should have and did not say why."""
        if self.heap_files:
            return None
        # the program's ELF headers read only for a run that wrote nothing
        from mem_profiler.core.program_kind import (
            GO_EXIT,
            ProgramKind,
            command_kind,
            unloadable_reason,
        )

        kind = command_kind(command)
        if unloadable := unloadable_reason(kind):
            return f"no profile of {command}, which {unloadable}"
        if self.failures or idle:
            return None
        if kind is ProgramKind.GO:
            return f"{command} {GO_EXIT}"
        return f"{command} wrote no profile (it ended without running exit handlers, e.g. killed)"


def check_output_folder(prefix: str) -> Path:
    """The folder the prefix writes into; raises LaunchError if it cannot be written."""
    folder = Path(os.path.dirname(absolute_prefix(prefix)))
    if not folder.is_dir():
        raise LaunchError(f"output folder {folder} does not exist: create it or change -o")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LaunchError(f"output folder {folder} is not writable: choose another -o")
    return folder


def _heap_files(folder: Path, folder_fd: int, pattern: re.Pattern[str]) -> dict[Path, int]:
    """The files of `pattern` in the folder open as `folder_fd` (the one the program
    writes in, whatever `folder` comes to lead to), named by `folder`."""
    found = {}
    for name in os.listdir(folder_fd):
        if pattern.match(name):
            with contextlib.suppress(FileNotFoundError):
                mtime = os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mtime_ns
                found[folder / name] = mtime
    return found


def run_profiled(
    argv: list[str], settings: CaptureSettings, started: Callable[[int], None] | None = None
) -> RunResult:
    """Run argv with the sampler preloaded; wait for it; list the files it wrote.
    `started` is told the program's pid as soon as it runs."""
    folder = check_output_folder(settings.prefix)
    # as the sampler does (sysutil.c): the folder as it is now, by descriptor to the end
    folder_fd = open_folder(str(folder))
    try:
        return _run(argv, settings, started, folder, folder_fd)
    finally:
        os.close(folder_fd)


def _run(
    argv: list[str],
    settings: CaptureSettings,
    started: Callable[[int], None] | None,
    folder: Path,
    folder_fd: int,
) -> RunResult:
    pattern = heap_file_pattern(settings.prefix)
    failure_pattern = heap_file_pattern(failure_prefix(settings.prefix))
    before = _heap_files(folder, folder_fd, pattern)
    failures_before = _heap_files(folder, folder_fd, failure_pattern)
    # The sampler says on this pipe which dumps it could not write, and why.
    report_read, report_write = os.pipe()
    os.set_blocking(report_read, False)
    env = settings.environment()
    env["MEMPROF_REPORT_FD"] = str(report_write)
    try:
        proc = subprocess.Popen(argv, env=env, pass_fds=(report_write,))
    except OSError as err:
        os.close(report_read)
        raise LaunchError(f"cannot run {argv[0]!r}: {err.strerror}") from None
    finally:
        os.close(report_write)
    if started is not None:
        started(proc.pid)

    # Ctrl-C reaches the program through the terminal; we wait for it to finish
    # writing its profile. SIGTERM/SIGHUP sent to us alone are passed on.
    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    after = _heap_files(folder, folder_fd, pattern)
    written = sorted(p for p, mtime in after.items() if before.get(p) != mtime)
    failures_after = _heap_files(folder, folder_fd, failure_pattern)
    exit_code = status if status >= 0 else 128 - status
    return RunResult(
        exit_code=exit_code,
        pid=proc.pid,
        heap_files=written,
        failure_files=sorted(
            p for p, mtime in failures_after.items() if failures_before.get(p) != mtime
        ),
        failures=_reported_failures(report_read),
        prefix=settings.prefix,
    )


def _reported_failures(fd: int) -> list[str]:
    """The lines the sampler wrote to the report pipe ("<pid> <why>"), whatever is there
    now: a child that outlives the program may still hold the pipe open."""
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return [
        line.split(" ", 1)[1] for line in data.decode(errors="replace").splitlines() if " " in line
    ]
