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

from mem_profiler.control import procfs
from mem_profiler.control.control_block import (
    BlockReplaced,
    ControlError,
    find_block,
    ran_exec_message,
)
from mem_profiler.control.controller import interrupt_event, list_targets
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.live_view import LiveView, NoWindow, WindowGone
from mem_profiler.parser.common.arrays import return_large_frees
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.read.window_snapshot import WindowCap
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

    def __init__(
        self, pid: int, rate: int, every: float, opens: bool = True, cap: WindowCap | None = None
    ) -> None:
        self.pid, self.rate, self.every, self.opens, self.cap = pid, rate, every, opens, cap
        self.view = self._new_view()
        self.periods = Periods(pid)
        self.said: set[str] = set()
        self.ended = False  # the window's last snapshot, written as the process ended, is in
        self._open = False

    def _new_view(self) -> LiveView:
        window = CaptureSettings(rate=self.rate)
        return LiveView(self.pid, window, self.every, COMMAND, WINDOW_GRACE_S, self.opens, self.cap)

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

    def period(
        self, say: Say, naming: contextlib.AbstractContextManager[object] | None = None
    ) -> list[HeapPeriod]:
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
        with naming or contextlib.nullcontext():  # the agent names one window at a time
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


# The agent's bounds on what one process may cost it (a round waits a period for the
# processes' periods: a slower one is pushed in a later round, the others not held up):
# a process that could not be started or read is tried again after a backoff, doubling
# to the most; the end waits this long for the periods in flight.
AGENT_RETRY_S, AGENT_MAX_RETRY_S = 60.0, 3600.0
AGENT_END_S = 5.0
# Processes that come or go in one round said one by one up to this many; past it, the
# round's in one line (a host of short-lived processes would fill the log).
PROCESS_LINES = 4


def run_agent(
    settings: PushSettings, rate: int, max_stacks: int, say: Say, ended: threading.Event
) -> Tally:
    """Pushes every process with the sampler loaded that this user may capture, each
    period, until `ended`: new processes are found at each push, ended ones let go. Each
    process is talked to on a thread of its own, so that one that is slow, stalls or
    lies costs only its own series; their windows are named one at a time, and none is
    kept past `max_stacks` (a process over it is let go, and tried again later)."""
    return_large_frees()
    sender = Sender(say)
    agent = _Agent(rate, settings.every, WindowCap(max_stacks, "agent --max-stacks"), say)
    clock = _Clock(settings.every)
    last = False
    try:
        while not last:
            last = clock.wait(ended)
            agent.find_new()
            cuts = agent.round(AGENT_END_S if last else settings.every, ended)
            for upload in uploads(settings, cuts):
                sender.send(upload)
    finally:
        agent.close(AGENT_END_S)
        tally = sender.close()
    return tally


class _Agent:
    """The processes the agent follows, each with the thread that talks to it now."""

    def __init__(self, rate: int, every: float, cap: WindowCap, say: Say) -> None:
        self.rate, self.every, self.cap, self.say = rate, every, cap, say
        self.followed: dict[int, _Followed] = {}
        # (pid, start time) -> when it may be tried again (inf: never, that process)
        self.refused: dict[tuple[int, int], float] = {}
        self.backoff: dict[tuple[int, int], float] = {}
        self.naming = threading.Lock()

    def find_new(self) -> None:
        now = time.monotonic()
        for target in list_targets():
            start = procfs.start_time(target.pid)
            key = (target.pid, start or 0)
            if target.pid in self.followed or start is None or self.refused.get(key, 0) > now:
                continue
            if not target.state.startswith(("idle", "capturing")):
                self.refused[key] = float("inf")  # another user's, or another version's
                continue
            self.followed[target.pid] = _Followed(
                _Pushed(target.pid, self.rate, self.every, cap=self.cap), key, target.cmdline[:80]
            )
        for key in [k for k, when in self.refused.items() if procfs.start_time(k[0]) != k[1]]:
            self.refused.pop(key)  # its process ended: a later one with its pid is another
            self.backoff.pop(key, None)

    def round(self, wait_s: float, ended: threading.Event) -> list[list[HeapPeriod]]:
        """Each process's period, those done within `wait_s` (or until `ended`)."""
        for followed in self.followed.values():
            followed.begin(self.say, self.naming)
        deadline = time.monotonic() + wait_s
        for followed in self.followed.values():
            while followed.busy and time.monotonic() < deadline:
                followed.thread.join(min(0.1, max(deadline - time.monotonic(), 0)))
                if ended.is_set() and wait_s > AGENT_END_S:
                    deadline = min(deadline, time.monotonic() + AGENT_END_S)
        cuts, came, went, slow = [], [], [], []
        for pid, followed in list(self.followed.items()):
            if followed.busy:
                if not followed.said_slow:
                    followed.said_slow = True
                    slow.append(pid)
                continue
            outcome, followed.outcome = followed.outcome, None
            if isinstance(outcome, list):
                if not followed.announced:
                    followed.announced = True
                    came.append(f"{pid} ({followed.cmdline})")
                cuts.append(outcome)
            elif outcome is not None and self._let_go(pid, followed, outcome):
                went.append(pid)
        self._tell(came, went, slow)
        return cuts

    def _tell(self, came: list[str], went: list[int], slow: list[int]) -> None:
        if len(came) + len(went) + len(slow) <= PROCESS_LINES:
            for process in came:
                self.say(f"pushing process {process}")
            for pid in went:
                self.say(f"process {pid} ended: its series end")
            for pid in slow:
                self.say(f"process {pid} is slow to answer: its periods wait")
            return
        said = [f"pushing {len(came)} more process{'es' * (len(came) != 1)}"] if came else []
        said += [f"{len(went)} ended, their series end"] if went else []
        said += [f"{len(slow)} slow to answer, their periods wait"] if slow else []
        self.say("; ".join(said) + f" ({len(self.followed)} followed)")

    def _let_go(self, pid: int, followed: _Followed, error: BaseException) -> bool:
        """The process is no longer followed: True where it ended, else it failed (said,
        tried again later)."""
        self.followed.pop(pid)
        followed.close()
        if procfs.start_time(pid) != followed.key[1]:
            return followed.announced
        wait = self.backoff.get(followed.key, AGENT_RETRY_S)
        self.backoff[followed.key] = min(wait * 2, AGENT_MAX_RETRY_S)
        self.refused[followed.key] = time.monotonic() + wait
        why = str(error) if isinstance(error, ControlError) else f"{type(error).__name__}: {error}"
        what = "its pushes stop" if followed.announced else "it is not pushed"
        self.say(f"process {pid}: {why}; {what}, tried again in {wait:.0f} s")
        return False

    def close(self, wait_s: float) -> None:
        """Closes the views (the windows the agent opened) of the processes not busy, for
        at most `wait_s` in all; a process busy or slow to answer is left to close its
        window at its deadline."""
        closing = []
        for followed in self.followed.values():
            if not followed.busy:
                thread = threading.Thread(target=followed.close, daemon=True)
                thread.start()
                closing.append(thread)
        deadline = time.monotonic() + wait_s
        for thread in closing:
            thread.join(max(deadline - time.monotonic(), 0))


class _Followed:
    """One process of the agent's: its window followed on a thread at a time (a daemon:
    a process that stalls cannot keep the agent from ending), and what the last made."""

    def __init__(self, pushed: _Pushed, key: tuple[int, int], cmdline: str) -> None:
        self.pushed, self.key, self.cmdline = pushed, key, cmdline
        self.started = self.announced = self.said_slow = False
        self.thread = threading.Thread()
        self.outcome: list[HeapPeriod] | BaseException | None = None

    @property
    def busy(self) -> bool:
        return self.thread.is_alive()

    def begin(self, say: Say, naming: threading.Lock) -> None:
        if self.busy or self.outcome is not None:
            return
        self.thread = threading.Thread(target=self._work, args=(say, naming), daemon=True)
        self.thread.start()

    def _work(self, say: Say, naming: threading.Lock) -> None:
        try:
            if not self.started:
                self.pushed.start()
                self.started = True
            self.outcome = self.pushed.period(say, naming)
        except Exception as err:  # noqa: BLE001 - whatever a target does ends only its series
            self.outcome = err

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pushed.close()
