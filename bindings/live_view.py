"""A live view of a running process (mem_profiler top, the pushes to a backend): a
capture window read by snapshots.

In an idle process the view opens a window of its own, marked as a view's (its end,
asked for or at its deadline, writes no file), and closes it when done. A window that is
open already (`mem_profiler run`, MEMPROF_CAPTURE=1) is only read, and stays open. Each
refresh asks the target for a snapshot: the window's figures so far as .heap files, in a
folder of the view's that only this user can enter, read and removed at once. The
view's own window has a deadline that each refresh moves forward, so that a view killed
without closing it leaves it to close by itself soon after (sampler/control/control.c)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

from mem_profiler.control import procfs
from mem_profiler.control.control_block import (
    CMD_DEADLINE,
    CMD_SNAPSHOT,
    CMD_STATUS,
    CMD_STOP,
    BlockReplaced,
    ControlBlock,
    ControlError,
    Status,
)
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.file_names import window_stem
from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.program_kind import is_emulator
from mem_profiler.parser.read.window_snapshot import (
    SUFFIX,
    OverCap,
    WindowCap,
    WindowSnapshot,
    read_snapshot,
)

# How long the view's own window outlives the refresh that is due next, should the view
# be gone (killed) or stalled (stopped, or slow to symbolize a profile's first stacks).
VIEW_GRACE_S = 5.0
# A tmpfs: a snapshot costs the target no disk writes (its fsync is free).
SNAPSHOT_FOLDER = "/dev/shm"
FOLDER_PREFIX = "memprof_top."  # memprof_top.<pid of the view>.<random>


class WindowGone(ControlError):
    """The window the view read was closed in the program (and, if `reopened`, another
    opened): the process lives on, and a view may read its next window afresh."""

    def __init__(self, message: str, reopened: bool) -> None:
        super().__init__(message)
        self.reopened = reopened


class NoWindow(ControlError):
    """A view that opens no window of its own found the process idle."""


@dataclass
class Snapshot:
    window: WindowSnapshot  # what changed since the view's last (all of it, the first time)
    time_ns: int  # when the target wrote it (CLOCK_REALTIME)
    rss_bytes: int  # the process's resident set, read just after


class LiveView:
    """A live view of process pid; `with LiveView(...) as view:` opens it (the window,
    if none is open) and closes it (the window, if the view opened it)."""

    def __init__(
        self,
        pid: int,
        window: CaptureSettings,
        interval: float,
        command: str = "mem_profiler top",
        grace_s: float = VIEW_GRACE_S,
        opens: bool = True,
        cap: WindowCap | None = None,
    ) -> None:
        self.pid = pid
        self.cap = cap  # the most it reads of the window: an error past it
        self.opens = opens  # whether it opens a window of its own in an idle process
        self.grace_s = grace_s  # how long the view's window outlives a refresh not made
        self.command = command  # the command its errors name
        self.window = window  # the window the view opens: its rate, depth, mode
        self.interval = interval
        self.owns_window = False
        self.window_start_ns = 0
        self._token = 0  # of the last snapshot read: the next is what changed since
        self._block: ControlBlock | None = None
        self._folder: str | None = None
        self._owner: int | None = None  # who runs what, from __enter__ on
        self._exe: str | None = None
        self._cmdline: str | None = None
        self._maps: list[MemoryMapping] = []  # the last read, kept once the process ended
        self._emulated = False

    def __enter__(self) -> LiveView:
        self._block = ControlBlock.open(self.pid, command=self.command)
        # who runs what and where its code is, as the kernel has it: a snapshot's own
        # lines are the target's word, and another user's process could name root's
        # files or processes in them (under qemu-user, where the kernel sees only the
        # emulator, the program's word is taken; files are still read as its user may)
        self._owner, self._exe = procfs.owner_uid(self.pid), procfs.exe_path(self.pid)
        self._cmdline = procfs.cmdline(self.pid) or None
        self._emulated = self._exe is not None and is_emulator(self._exe)
        self._read_maps()
        try:
            self._block.lock()
            status = self._block.request(CMD_STATUS)
            remove_folders_of_ended_views()
            self._folder = tempfile.mkdtemp(
                prefix=f"{FOLDER_PREFIX}{os.getpid()}.", dir=SNAPSHOT_FOLDER
            )
            lend_to_target(self._folder, self.pid)
            if not status.capturing and not self.opens:
                raise NoWindow(f"process {self.pid} has no window open")
            if not status.capturing:
                try:
                    asked = dataclasses.replace(self.window, prefix=self._prefix)
                    status = self._block.start(asked, self._deadline_ns(), view=True)
                    self.owns_window = True
                except ControlError:
                    # the program opened its own window meanwhile (`run`, as it loads)
                    status = self._block.status()
                    if not status.capturing:
                        raise
        except BaseException:
            self.__exit__()
            raise
        self.window_start_ns = status.window_start_ns
        return self

    @property
    def _control(self) -> ControlBlock:
        """The process's control block, open from __enter__ on."""
        if self._block is None:
            raise RuntimeError("LiveView used outside its with block")
        return self._block

    @property
    def _prefix(self) -> str:
        if self._folder is None:
            raise RuntimeError("LiveView used outside its with block")
        return os.path.join(self._folder, "snapshot_")

    def _deadline_ns(self) -> int:
        return time.time_ns() + int((self.interval + self.grace_s) * 1e9)

    def snapshot(self) -> Snapshot:
        """The window's figures now, as what changed since the view's last snapshot;
        ControlError (one sentence) when the process ended or the window closed, once
        the window's last snapshot, written as the process ended, was taken."""
        try:
            if self.owns_window:
                self._control.request(CMD_DEADLINE, deadline_ns=self._deadline_ns())
            status = self._control.request(CMD_SNAPSHOT, prefix=self._prefix, since=self._token)
        except BlockReplaced:
            raise  # the process goes on, in a new program: its reader may follow it
        except ControlError as err:
            last = self._taken(None)  # the process ended: its window's last snapshot
            if last is not None:
                return Snapshot(last, self._end_of(last), 0)
            why = self._window_gone()
            if why == self._closed_in_program:
                raise WindowGone(why, reopened=False) from None
            if why is None:  # closed and another opened between the request and the status
                self._check_same_window(self._control.status())
            raise ControlError(why or str(err)) from None
        self._check_same_window(status)
        rss = procfs.rss_bytes(self.pid)
        window = self._taken(status.snapshot_token)
        if window is None:
            raise ControlError(f"process {self.pid} wrote no snapshot")
        return Snapshot(window, self._end_of(window), rss)

    def _check_same_window(self, status: Status) -> None:
        if status.window_start_ns != self.window_start_ns:
            raise WindowGone(
                f"the window of process {self.pid} was closed and another opened in the program",
                reopened=True,
            )

    def _taken(self, token: int | None) -> WindowSnapshot | None:
        """The snapshot in the view's folder, read and removed: the one whose token the
        process answered, or (`token` None) the last it wrote as it ended, where it follows
        the view's last; None where there is none."""
        # written as window 0 (memprof_write_snapshot, sampler/writers/window_snapshot.c)
        path = window_stem(self._prefix, self.pid, 0) + SUFFIX
        if token is None and not os.path.lexists(path):
            return None
        since, self._token = self._token, 0  # unless this one is read: the next takes all
        try:
            window = read_snapshot(path, self.cap)
        except OverCap as err:
            raise ControlError(f"the window of process {self.pid} {err}") from None
        except HeapFileError as err:
            raise ControlError(
                f"process {self.pid} wrote a snapshot that cannot be read: {err}"
            ) from None
        finally:
            with contextlib.suppress(OSError):  # a directory in its place: the folder's end
                os.unlink(path)
        if token is None and (window.since != since or not window.head.meta.get("ended")):
            return None
        if token is not None and window.token != token:
            raise ControlError(f"process {self.pid} wrote another snapshot than the one asked for")
        self._token = window.token
        self._read_maps()
        head = dataclasses.replace(window.head, pid=self.pid, owner=self._owner)
        if not self._emulated:
            head = dataclasses.replace(
                head, exe=self._exe, cmdline=self._cmdline, mappings=self._maps
            )
        window.head = head
        return window

    def _read_maps(self) -> None:
        with contextlib.suppress(OSError):
            self._maps = procfs.memory_map(self.pid)

    def _end_of(self, window: WindowSnapshot) -> int:
        end = window.head.window_ns[1]
        if end is None:  # the sampler writes it in every snapshot
            raise ControlError(f"a snapshot of process {self.pid} says not when it was taken")
        return end

    def _window_gone(self) -> str | None:
        """Why the window can no longer be read, or None if it can."""
        if procfs.start_time(self.pid) is None:
            return f"process {self.pid} ended"
        try:
            if self._control.request(CMD_STATUS).capturing:
                return None
        except ControlError as err:  # it ran exec, or changed its user
            return str(err)
        if self.owns_window:
            return (
                f"the window in process {self.pid} closed at its deadline: this view "
                f"was stalled for more than {self.grace_s:g} s"
            )
        return self._closed_in_program

    @property
    def _closed_in_program(self) -> str:
        return f"the window of process {self.pid} was closed in the program"

    def __exit__(self, *exc: object) -> None:
        try:
            if self.owns_window and self._window_gone() is None:
                self._control.request(CMD_STOP)
        finally:
            self._control.close()
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)


def lend_to_target(folder: str, pid: int) -> None:
    """Gives the view's folder to the user pid writes its snapshots as, when that is
    another user (root viewing a user's process): the target writes them itself."""
    creds = procfs.file_credentials(pid)
    if creds is not None and creds[0] != os.geteuid():
        try:
            os.chown(folder, creds[0], creds[1])
        except OSError as err:
            raise ControlError(
                f"process {pid} writes its snapshots itself, as another user, and this "
                f"user cannot give it a folder ({err.strerror}): run mem_profiler as root"
            ) from None


def remove_folders_of_ended_views() -> None:
    """Removes the snapshot folders of views that were killed (each holds at most the one
    snapshot it was reading): this user's, and, for root, those it lent to a target.
    Other views may be removing theirs meanwhile."""
    for entry in os.scandir(SNAPSHOT_FOLDER):
        owner_pid = entry.name.removeprefix(FOLDER_PREFIX).split(".")[0]
        if (
            not entry.name.startswith(FOLDER_PREFIX)
            or not owner_pid.isdigit()
            or procfs.start_time(int(owner_pid)) is not None
        ):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False) and (
                os.geteuid() == 0 or entry.stat(follow_symlinks=False).st_uid == os.geteuid()
            ):
                shutil.rmtree(entry.path, ignore_errors=True)
