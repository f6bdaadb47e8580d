"""Capture windows in running processes: find the capturable ones, open a window,
follow it, close it and collect the files (the target side is sampler/control/control.c)."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mem_profiler.control import procfs
from mem_profiler.control.control_block import (
    CMD_DETACH,
    CMD_DUMP,
    CMD_STATUS,
    CMD_STOP,
    ControlBlock,
    ControlError,
    NotPermitted,
    OtherVersion,
    Status,
    candidates_by_pid,
    find_block,
    refusal,
    remove_stale,
    user_name,
)
from mem_profiler.control.launch import check_output_folder
from mem_profiler.control.sampler_lib import library_path
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.core import progress
from mem_profiler.core.file_names import (
    failure_files,
    files_of_process,
    highest_seq,
    window_files,
)

# The target closes the window itself this long after the requested end, should
# the controller be gone by then.
DEADLINE_GRACE_S = 2.0


@dataclass
class Target:
    pid: int
    user: str
    state: str  # capturing, idle, stale, or ? (not ours to read)
    cmdline: str
    last_dump: str = ""


def printable(text: str) -> str:
    """Text of another process (its command line, a path) as ps shows it: a character
    that is not printable (a newline, an escape sequence) becomes '?'."""
    return "".join(c if c.isprintable() else "?" for c in text)


def list_targets(clean: bool = True) -> list[Target]:
    """Every live process with a control block, by pid; stale blocks of ours (their
    process gone, or another process now has the pid) are removed when `clean`. Entries
    that are not a regular file of the process's owner or root are not blocks: anyone
    can put files in /dev/shm. The state of a process this user may not capture is ?."""
    targets = []
    for pid, paths in sorted(candidates_by_pid().items()):
        owner = procfs.owner_uid(pid)
        if owner is None or procfs.start_time(pid) is None:
            if clean:  # left by a process that is gone
                for path in paths:
                    remove_stale(path)
            continue
        if not any(_is_block_of(path, owner) for path in paths):
            continue
        state, last_dump = ("?", "") if refusal(pid, owner) else _state_of(pid, paths)
        if state != "stale":
            targets.append(
                Target(
                    pid,
                    user_name(owner),
                    state,
                    printable(procfs.cmdline(pid)),
                    printable(last_dump),
                )
            )
    return targets


def _is_block_of(path: str, owner: int) -> bool:
    """Whether `path` may be a block of a process of `owner`: a regular file of theirs
    or root's (what it holds is checked when it is opened)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:  # removed since the listing (its process ended)
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid in (owner, 0)


def _state_of(pid: int, paths: list[str] | None = None) -> tuple[str, str]:
    """(state, last dump) of a process this user may capture, from its block among
    `paths` (else block_candidates); the status is read, not asked for."""
    try:
        with ControlBlock.open(pid, paths) as block:  # removes a stale block of ours
            status = block.status()
    except OtherVersion:
        return "other ABI", ""
    except NotPermitted:
        return "?", ""
    except ControlError:
        return "stale", ""
    state = "capturing" if status.capturing else "idle"
    return (state + " (attached)" if status.injected else state), status.last_dump


def only_target() -> int:
    """The pid of this user's only capturable process; ControlError listing them otherwise."""
    mine = [t for t in list_targets() if t.state.startswith(("idle", "capturing"))]
    if len(mine) == 1:
        return mine[0].pid
    if not mine:
        raise ControlError(
            "no process of yours has the sampler loaded: start one with "
            "`mem_profiler run --idle -- CMD`"
        )
    listing = "; ".join(f"{t.pid} {t.cmdline}" for t in mine)
    raise ControlError(f"several processes can be captured ({listing}): choose one with -p")


def has_sampler(pid: int) -> bool:
    """Whether pid has a control block (one left by an earlier process with the same pid
    is found out, and removed, when it is opened)."""
    return find_block(pid) is not None


def attach(pid: int, timeout: float = 5.0) -> None:
    """Loads the sampler into pid, started without it (attach/inject.py), and waits
    for its control block. AttachError when it cannot be loaded."""
    from mem_profiler.control.attach.inject import inject  # its ELF reader, for attaching alone

    inject(pid, library_path())
    progress.stage(f"waiting for process {pid}'s control block")
    end = time.monotonic() + timeout
    while find_block(pid) is None:
        if procfs.start_time(pid) is None or time.monotonic() > end:
            raise ControlError(
                f"process {pid} loaded the sampler but made no control block in {timeout:g} s"
            )
        time.sleep(0.01)


def detach(pid: int) -> tuple[Status, Status, list[str]]:
    """Closes pid's window if one is open (its files are returned) and has every GOT slot
    the sampler redirected put back; the sampler stays loaded, idle. The status before
    and after."""
    with ControlBlock.open(pid) as block:
        block.lock()
        before = block.request(CMD_STATUS)
        status = block.request(CMD_DETACH)
    check_dump(pid, before, status)
    closed = before.capturing and status.dumps > before.dumps
    return before, status, last_dump_files(status) if closed else []


def dump_window(pid: int) -> list[str]:
    """Writes the files of pid's open window, whoever opened it, and leaves it open
    (jemalloc's prof.dump); returns them."""
    with ControlBlock.open(pid) as block:
        # Not locked: another controller's window is dumped all the same, its requests
        # and ours taking turns (ControlBlock.request).
        before = block.request(CMD_STATUS)
        if not before.capturing:
            raise ControlError(
                f"process {pid} has no window open: open one with "
                f"`mem_profiler -p {pid} -s SECONDS`"
            )
        try:
            status = block.request(CMD_DUMP)
        except ControlError:
            status = block.request(CMD_STATUS)
            if status.failed_dumps == before.failed_dumps:
                raise
    check_dump(pid, before, status)
    return last_dump_files(status)


@dataclass
class CaptureResult:
    paths: list[str]
    status: Status
    failure_paths: list[str]  # what was live as the program ran out of device memory


def capture_window(
    pid: int,
    seconds: float,
    settings: CaptureSettings,
    progress: Callable[[float, Status], None] | None = None,
    tick: float = 0.5,
) -> CaptureResult:
    """Opens a window of `seconds` in pid as `settings` say, reports progress every
    `tick`, closes it and returns the files written. Ctrl-C (SIGINT) ends the window
    early, whenever it comes once the window is asked for."""
    prefix = settings.prefix
    folder = check_output_folder(prefix)
    with ControlBlock.open(pid) as block, interrupt_event() as interrupted:
        check_target_writes_in(pid, str(folder))
        block.lock()
        before = block.request(CMD_STATUS)
        if before.capturing:
            raise ControlError(already_capturing(pid, before))
        if interrupted.is_set():
            raise KeyboardInterrupt  # before any window was asked for
        earlier = highest_seq(prefix, pid)  # this window's files are numbered after
        deadline_ns = time.time_ns() + int((seconds + DEADLINE_GRACE_S) * 1e9)
        block.start(settings, deadline_ns)
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                if interrupted.wait(min(tick, seconds - elapsed)):
                    break
                status = block.request(CMD_STATUS)
                if progress is not None:
                    progress(time.monotonic() - started, status)
                if not status.capturing:
                    break  # its deadline passed, or it was stopped in-process
        except ControlError:
            if procfs.start_time(pid) is None:
                raise ControlError(ended_during_window(pid, prefix, earlier)) from None
            raise
        try:
            status = block.request(CMD_STOP)
        except ControlError:
            status = block.request(CMD_STATUS)  # closed at its deadline already?
            if (status.dumps, status.failed_dumps) == (before.dumps, before.failed_dumps):
                raise
        check_dump(pid, before, status)
        return CaptureResult(
            last_dump_files(status), status, failure_files(status.last_dump, prefix)
        )


def check_target_writes_in(pid: int, folder: str) -> None:
    """ControlError when pid, which writes its window's files itself, as its own user,
    may not make files in `folder` (a process of another user's: check_output_folder
    has checked this user's rights)."""
    creds = procfs.file_credentials(pid)
    if creds is not None and creds[0] != os.geteuid() and not procfs.may_write_in(pid, folder):
        owner = procfs.owner_uid(pid)
        user = "its user" if owner is None else user_name(owner)
        raise ControlError(
            f"process {pid} writes its profile itself, as {user}, who may not write in "
            f"{folder}: choose a folder it can write in with -o (e.g. -o /tmp/NAME_)"
        )


def already_capturing(pid: int, status: Status) -> str:
    """Why a window cannot be opened in pid, which has one open and no controller holding
    it (no live one: the lock was free)."""
    if not status.window_by_controller:
        return f"process {pid} is already capturing (started in-process); stop that window first"
    detach = f"`mem_profiler detach -p {pid}`"
    left = (status.window_deadline_ns - time.time_ns()) / 1e9
    closes = (
        f"it closes itself and writes its files in {max(0.0, left):.0f} s, or at once with {detach}"
        if status.window_deadline_ns
        else f"{detach} closes it and writes its files"
    )
    return (
        f"process {pid} is already capturing, in a window opened by a mem_profiler that "
        f"has ended: {closes}"
    )


SIGNALLED = b"s"  # what interrupt_event's handler writes to its pipe


@contextlib.contextmanager
def interrupt_event(*signums: int) -> Iterator[threading.Event]:
    """An event that the signals `signums` (SIGINT if none) set, instead of raising
    KeyboardInterrupt or ending the process wherever the main thread is: a window asked
    for is then always closed and its files written (a last push made), however early
    the signal comes. Off the main thread, where no handler can be set, the event is
    never set."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    # The handler runs on the main thread wherever it is, maybe inside the event's own
    # lock (Event.wait holds it as it starts and ends): setting the event there would
    # take the lock again and hang. It only writes to a pipe, which a thread of its own
    # reads to set the event.
    read_end, write_end = os.pipe()

    def set_on_signal() -> None:
        if os.read(read_end, 1) == SIGNALLED:
            interrupted.set()

    watcher = threading.Thread(target=set_on_signal, name="mem_profiler signals", daemon=True)
    watcher.start()
    previous = {
        s: signal.signal(s, lambda *_: os.write(write_end, SIGNALLED))
        for s in signums or (signal.SIGINT,)
    }
    try:
        yield interrupted
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.write(write_end, b"e")  # the watcher's end, if no signal came
        watcher.join()
        os.close(read_end)
        os.close(write_end)


def check_dump(pid: int, before: Status, after: Status) -> None:
    """ControlError with the target's reason when a dump since `before` failed."""
    if after.failed_dumps > before.failed_dumps:
        raise ControlError(f"process {pid} {after.dump_failure or 'could not write its profile'}")


def last_dump_files(status: Status) -> list[str]:
    """The files of the last dump: the host heap's, then each device heap's it wrote."""
    return list(window_files(status.last_dump).values())


def ended_during_window(pid: int, prefix: str, earlier: int) -> str:
    """What a process that ended during a window left: a .heap file if its exit handlers
    ran, the event log of a log-mode window even if it was killed; not the files of its
    earlier windows (`earlier`: the highest sequence number of those)."""
    left = files_of_process(prefix, pid, after_seq=earlier)
    if not left:
        return f"process {pid} ended during the capture; nothing was collected"
    return f"process {pid} ended during the capture; it left {', '.join(left)}"
