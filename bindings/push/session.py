"""The pushes of `mem_profiler -p PID --push`, `run --push` and `agent --push`: windows
read by snapshots every period, each period's profiles handed to the sender, and a
last push when the capture ends (Ctrl-C, SIGTERM, the process's end)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mem_profiler import defaults, procfs
from mem_profiler.control_block import (
    BlockReplaced,
    ControlError,
    find_block,
    ran_exec_message,
)
from mem_profiler.controller import interrupt_event, list_targets
from mem_profiler.live_view import LiveView, NoWindow, WindowGone
from mem_profiler.parser.common.arrays import return_large_frees
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.push.backends import uploads
from mem_profiler.push.periods import HeapPeriod, Periods
from mem_profiler.push.sender import Sender, Tally
from mem_profiler.push.settings import PushSettings

Say = Callable[[str], None]
COMMAND = "mem_profiler"  # named in the errors' hints: `mem_profiler -p PID --attach`
# A pusher's own window outlives a push not made by this long: the first symbolization
# of a large program's stacks may take that long.
WINDOW_GRACE_S = 60.0
# How long a process that ran exec is given to load the sampler in its new program (the
# loader maps it before the program's first instruction).
EXEC_WAIT_S = 5.0
# what ends a push (controller.interrupt_event), with one last push
ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Pushed:
    """One process's window followed: its view and its periods; into the program it runs
    next when it runs exec (a shim, a wrapper script), and into the window it opens next
    when it closes the one read. A view that `opens` no window of its own (`run`'s, which
    reads the program's) waits for the program to open one."""

    def __init__(self, pid: int, rate: int, every: float, opens: bool = True) -> None:
        self.pid, self.rate, self.every, self.opens = pid, rate, every, opens
        self.view = self._new_view()
        self.periods = Periods(pid)
        self.said: set[str] = set()
        self.ended = False  # the window's last snapshot, written as the process ended, is in
        self._open = False

    def _new_view(self) -> LiveView:
        depth, grace = defaults.DEPTH, WINDOW_GRACE_S
        return LiveView(self.pid, self.rate, depth, self.every, COMMAND, grace, self.opens)

    def start(self, execed: bool = False) -> None:
        """Opens the view (and the window, in an idle process); ControlError (NoWindow:
        the process is idle and the view opens no window). A process that runs exec
        meanwhile (or ran it: `execed`) is opened in its new program, once that program's
        sampler has made its block."""
        deadline = time.monotonic() + EXEC_WAIT_S
        while True:
            try:
                self.view.__enter__()
                self._open = True
                return
            except ControlError as err:
                execed = execed or isinstance(err, BlockReplaced)
                if not execed or procfs.start_time(self.pid) is None:
                    raise
                if time.monotonic() > deadline:
                    raise BlockReplaced(ran_exec_message(self.pid)) from None
                self.view = self._new_view()
            time.sleep(0.01)

    def close(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(ControlError, OSError):
                self.view.__exit__()

    def period(self, say: Say) -> list[HeapPeriod]:
        """The period since the last push; ControlError when the window is gone, NoWindow
        while a view that opens none has none to read. The next window of the process (in
        its new program after exec, or opened after the one read closed) is read afresh:
        its first period is its start's."""
        if not self._open:
            self._restart()
        try:
            snap = self.view.snapshot()
        except BlockReplaced:
            self._restart(execed=True)
            snap = self.view.snapshot()
        except WindowGone as gone:
            if self.opens and not gone.reopened:
                raise
            self._restart()
            snap = self.view.snapshot()
        cut = self.periods.cut(snap.window, snap.time_ns)
        self.ended = "ended" in snap.window.head.meta
        for warning in {w for p in cut for w in p.warnings} - self.said:
            self.said.add(warning)
            say(f"process {self.pid}: {warning}")
        return cut

    def _restart(self, execed: bool = False) -> None:
        """A view of the process's window now, whose periods start afresh."""
        self.close()
        self.view, self.periods = self._new_view(), Periods(self.pid)
        self.start(execed)


class _Clock:
    """Push times every `every` seconds from now, skipping those already past."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.next = time.monotonic() + every

    def wait(self, ended: threading.Event) -> bool:
        """Waits for the next push time; True when `ended` was set meanwhile."""
        stop = ended.wait(max(0.0, self.next - time.monotonic()))
        now = time.monotonic()
        self.next += self.every * max(1, int((now - self.next) // self.every) + 1)
        return stop


def ending_signals() -> contextlib.AbstractContextManager[threading.Event]:
    """An event that Ctrl-C, SIGTERM and SIGHUP set, for the last push before the end."""
    return interrupt_event(*ENDING_SIGNALS)


def push_process(
    pid: int, settings: PushSettings, rate: int, say: Say, ended: threading.Event
) -> Tally:
    """Pushes pid's window (its own, or the view's opened in an idle process) every
    period until `ended` is set, the process ends or its window closes."""
    return_large_frees()
    sender = Sender(say)
    try:
        pushed = _Pushed(pid, rate, settings.every)
        pushed.start()
        try:
            _follow(pushed, settings, sender, say, ended)
        finally:
            pushed.close()
    finally:
        tally = sender.close()
    return tally


def _follow(
    pushed: _Pushed, settings: PushSettings, sender: Sender, say: Say, ended: threading.Event
) -> None:
    clock = _Clock(settings.every)
    while True:
        last = clock.wait(ended)
        try:
            cut = pushed.period(say)
        except NoWindow:
            cut = []  # run's program closed its window: it may open another
        except ControlError as err:
            if procfs.start_time(pushed.pid) is not None:
                say(str(err))
            elif pushed.view.owns_window and not pushed.ended:  # it ended without its last
                say(f"process {pushed.pid} ended: what it did after the last push is not pushed")
            return
        for upload in uploads(settings, [cut]):
            sender.send(upload)
        if last:
            return


class RunPusher:
    """The pushes of `run --push`: the program's window followed from its start on a
    thread; its files at its end make the last push."""

    def __init__(self, settings: PushSettings, rate: int, say: Say) -> None:
        return_large_frees()
        self.settings, self.rate, self.say = settings, rate, say
        self.sender = Sender(say)
        self._ended = threading.Event()
        self._pushed: _Pushed | None = None
        self._thread: threading.Thread | None = None

    def started(self, pid: int) -> None:
        self._pushed = _Pushed(pid, self.rate, self.settings.every, opens=False)
        self._thread = threading.Thread(target=self._follow, name="mem_profiler run --push")
        self._thread.start()

    def _follow(self) -> None:
        assert self._pushed is not None
        pid = self._pushed.pid
        while find_block(pid) is None:  # the sampler makes it as the program starts
            if procfs.start_time(pid) is None or self._ended.wait(0.01):
                return
        try:  # the view opens at the first period: the program's window is open by then
            _follow(self._pushed, self.settings, self.sender, self.say, self._ended)
        finally:
            self._pushed.close()

    def finish(self, files: dict[str, Path]) -> Tally:
        """The last push, of the window's last snapshot, written as the program ended (or
        where there is none, of the files it wrote at its end), once the pushes before it
        are made."""
        self._ended.set()
        if self._thread is not None:
            self._thread.join()
        if self._pushed is not None and not self._pushed.ended and files:
            profiles = [read_heap(path) for _, path in sorted(files.items(), key=_host_first)]
            end = profiles[0].window_ns[1] or time.time_ns()
            cut = self._pushed.periods.cut_files(profiles, end)
            for upload in uploads(self.settings, [cut]):
                self.sender.send(upload)
        return self.sender.close()


def _host_first(item: tuple[str, Path]) -> tuple[bool, str]:
    return item[0] != "host", item[0]


def run_agent(settings: PushSettings, rate: int, say: Say, ended: threading.Event) -> Tally:
    """Pushes every process with the sampler loaded that this user may capture, each
    period, until `ended`: new processes are found at each push, ended ones let go."""
    return_large_frees()
    sender = Sender(say)
    followed: dict[int, _Pushed] = {}
    refused: set[int] = set()
    clock = _Clock(settings.every)
    last = False
    try:
        while not last:
            last = clock.wait(ended)
            _find_new(followed, refused, rate, settings.every, say)
            cuts = []
            for pid, pushed in list(followed.items()):
                try:
                    cuts.append(pushed.period(say))
                except ControlError as err:
                    gone = procfs.start_time(pid) is None
                    say(f"process {pid} ended: its series end" if gone else str(err))
                    followed.pop(pid).close()
            for upload in uploads(settings, cuts):
                sender.send(upload)
    finally:
        for pushed in followed.values():
            pushed.close()
        tally = sender.close()
    return tally


def _find_new(
    followed: dict[int, _Pushed], refused: set[int], rate: int, every: float, say: Say
) -> None:
    for target in list_targets():
        if target.pid in followed or target.pid in refused:
            continue
        if not target.state.startswith(("idle", "capturing")):
            refused.add(target.pid)  # another user's, or another version's sampler
            continue
        pushed = _Pushed(target.pid, rate, every)
        try:
            pushed.start()
        except ControlError as err:
            refused.add(target.pid)
            say(f"process {target.pid} is not pushed: {err}")
            continue
        followed[target.pid] = pushed
        say(f"pushing process {target.pid} ({target.cmdline[:80]})")
