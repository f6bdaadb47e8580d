"""mem_profiler top: a live view of real preloaded (or attached) targets, in batch mode and
on a real terminal (tmux), with the figures checked against the fixtures' known rates."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.paths import MEM_PROFILER
from support.processes import wait_for
from support.profiling import capture_cli
from support.sampling_math import relative_sd
from support.targets import Server
from support.top_view import (
    BLOCK_64K_WEIGHT,
    GROWER,
    Row,
    amount,
    assert_grown_as_allocated,
    check_grower_rows,
    folders_of,
    grower_env,
    parse_batch,
    parse_rows,
    top,
)

from mem_profiler.control import controller
from mem_profiler.control.control_block import (
    CMD_DEADLINE,
    CMD_STATUS,
    ControlBlock,
    ControlError,
    segment_path,
)
from mem_profiler.control.procfs import no_such_process
from mem_profiler.live_view import VIEW_GRACE_S

MiB = 1024 * 1024
WITHOUT_SAMPLER = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def state_of(pid: int) -> tuple[str, str]:
    """(state, last dump) as `mem_profiler list` shows them."""
    return controller._state_of(pid)


@pytest.fixture(scope="module")
def grower_exe(build_fixture):
    return build_fixture("grower")


@pytest.fixture
def grower(grower_exe, tmp_path):
    s = Server(grower_exe, sampler_env=grower_env(tmp_path))
    yield s
    s.stop()


@pytest.fixture
def server(build_fixture):
    s = Server(build_fixture("server"))  # s.exe: the program
    yield s
    s.stop()


def test_batch_the_growing_site_tops_growth_at_its_rate(grower, tmp_path):
    refreshes = top(grower.pid, "-n", "3", "--interval", "1", "--sort", "growth")
    assert [r.number for r in refreshes] == [1, 2, 3]
    for refresh in refreshes:
        # the rates are per second of the interval measured, however long the machine
        # took to take a snapshot: that interval is the one the figures are checked on
        assert refresh.interval_s > 0
        assert "top's window, -c 1024" in refresh.header[1]
        assert "every heap, sorted by growth" in refresh.header[1]
        assert [r.site for r in refresh.rows] == ["site_grow", "site_churn"]
        assert refresh.rows[0].stack.startswith(f"site_grow {GROWER}:20 < main {GROWER}:")
        assert {r.heap for r in refresh.rows} == {"host"}
        check_grower_rows(refresh.rows, refresh.interval_s, tmp_path)
        (heap_line,) = [line for line in refresh.header if line.startswith("heap host:")]
        assert "in use, growing +" in heap_line
    assert_grown_as_allocated(refreshes)
    # the window top opened is closed, the process idle and capturable, and no file was
    # written: a view's window leaves its figures by snapshots only
    assert state_of(grower.pid) == ("idle", "")


def test_batch_sort_keys_and_the_servers_known_proportions(server, tmp_path):
    started = time.time_ns()
    by_alloc = top(server.pid, "-n", "3", "--interval", "0.5", "--sort", "alloc")
    ended = time.time_ns()
    # what the rings hold is bounded by the server's own count of iterations in the
    # window: its start is not shown, but the window lies inside top's run and has been
    # open as long as the header says (to 0.1 s)
    _, most = server.history.iterations(server.pid, started, ended)
    before = Server.ring_blocks(0, most)  # at top's baseline snapshot
    for refresh in by_alloc:
        rows = refresh.rows
        assert [r.site for r in rows] == ["site_transient", "site_pages", "site_small"]
        transient, pages, small = rows
        # per iteration: 65536 B transient, 4096 B pages (both sampled with p > 0.98),
        # 4 x 256 B small
        assert transient.alloc_rate / pages.alloc_rate == pytest.approx(16, rel=0.02)
        assert pages.alloc_rate / small.alloc_rate == pytest.approx(4, rel=0.05)
        opened = re.search(r"open (\d+\.\d) s", refresh.header[1])
        assert opened is not None, refresh.header
        open_s = float(opened[1])
        fewest = server.history.fewest_within(
            server.pid, started, ended, int((open_s - 0.05) * 1e9)
        )
        # live: each ring's blocks allocated in the window, 16 MiB once it turned over
        server.check_rings({r.site: r.in_use for r in rows}, 1024, fewest, most)
        now = Server.ring_blocks(fewest, most)
        # and the rings do not grow once full: the bytes grown since the refresh before
        # are the difference of two independent estimates
        for ring, size, sd in (
            (pages, 4096, relative_sd(4096, 4096, 1024)),
            (small, 256, relative_sd(65536, 256, 1024)),
        ):
            bound = 5 * 2**0.5 * sd * 16 * MiB
            (low_now, high_now), (low_then, high_then) = now[ring.site], before[ring.site]
            # growth is a rate over the interval top measured, which it shows to 0.01 s:
            # the bytes grown are growth times an interval within half of that
            low, high = sorted(ring.growth * (refresh.interval_s + d) for d in (-0.005, 0.005))
            assert (low_now - high_then) * size - bound <= high, (ring, refresh.interval_s)
            assert low <= (high_now - low_then) * size + bound, (ring, refresh.interval_s)
        before = now
        assert transient.in_use <= BLOCK_64K_WEIGHT
        rss = next(line for line in refresh.header if line.startswith("RSS "))
        assert amount(*rss.split()[1:3]) >= 0.9 * 32 * MiB
    by_in_use = top(server.pid, "-n", "1", "--interval", "0.5")
    assert {r.site for r in by_in_use[0].rows[:2]} == {"site_pages", "site_small"}
    assert "sorted by in use" in by_in_use[0].header[1]
    only_cuda = top(server.pid, "-n", "1", "--interval", "0.5", "--heap", "cuda")
    assert only_cuda[0].rows == [] and "the cuda heap" in only_cuda[0].header[1]
    # idle again, and capturable as before
    result = capture_cli(server.pid, "-s", "0.3", "-o", tmp_path / "after_")
    assert result.returncode == 0, result.stderr
    server.check_window(tmp_path / f"after_{server.pid}.0001.heap")


class Terminal:
    """A tmux server of our own (its own socket) running one program in a pane."""

    def __init__(self, folder: Path, argv: list[str]) -> None:
        self.socket = str(folder / "tmux.sock")
        self.status = folder / "status"
        # The program starts once the pane has its size (a new session's pane may be
        # resized after its program has read it), without pytest's COLUMNS and LINES,
        # which would override the size.
        self.tmux("new-session", "-d", "-x", "160", "-y", "40", "sleep 600")
        self.tmux(
            "respawn-pane",
            "-k",
            f"unset COLUMNS LINES; {shlex.join(argv)}; echo $? > {self.status}",
        )
        shell = int(self.tmux("display", "-p", "#{pane_pid}"))
        children = Path(f"/proc/{shell}/task/{shell}/children")
        self.pid = int(wait_for(lambda: children.read_text().split(), what="the program")[0])

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-f", "/dev/null", "-S", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def wait_screen(self, pattern: str, timeout: float = 30) -> str:
        try:
            return wait_for(
                lambda: re.search(pattern, self.screen(), re.M) and self.screen(),
                timeout,
                f"{pattern!r} on the screen",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{self.screen()}") from None

    def exit_status(self, timeout: float = 15) -> int:
        wait_for(self.status.is_file, timeout, "the program to end")
        return int(self.status.read_text())

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def terminal(tmp_path):
    opened = []

    def open_terminal(argv: list[str]) -> Terminal:
        opened.append(Terminal(tmp_path, argv))
        return opened[-1]

    yield open_terminal
    for t in opened:
        t.close()


def first_row(screen: str) -> Row:
    return parse_rows(screen.split("IN USE", 1)[1].splitlines())[0]


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_terminal_sort_keys_and_quit(grower, terminal, tmp_path, quit_key):
    term = terminal([MEM_PROFILER, "top", "-p", str(grower.pid), "--interval", "0.5"])
    screen = term.wait_screen(r"refresh [2-9].*sorted by in use")
    assert first_row(screen).site == "site_grow"
    assert re.search(r"^ *RSS +\S", screen, re.M)  # the sparklines' labels
    assert re.search(r"i sort by in use +a by allocation rate +g by growth", screen)
    term.keys("a")
    screen = term.wait_screen(r"sorted by allocation rate")
    assert first_row(screen).site == "site_churn"
    term.keys("g")
    screen = term.wait_screen(r"refresh .*sorted by growth")
    row = first_row(screen)
    assert row.site == "site_grow" and row.stack.startswith(f"site_grow {GROWER}:20 < main")
    term.keys(quit_key)
    assert term.exit_status() == 0
    assert state_of(grower.pid) == ("idle", "")
    assert folders_of(term.pid) == []
    result = capture_cli(grower.pid, "-s", "0.3", "-o", tmp_path / "after_")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"after_{grower.pid}.0001.heap").is_file()


@pytest.mark.alone  # another test's view would remove the folder the killed one left
def test_a_killed_tops_window_closes_at_its_deadline(grower):
    started_ns = time.time_ns()
    view = subprocess.Popen(
        [MEM_PROFILER, "top", "-p", str(grower.pid), "--interval", "0.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert view.stdout is not None
    try:
        while view.stdout.readline().strip():  # the first refresh
            pass
        assert state_of(grower.pid)[0] == "capturing"
        view.send_signal(signal.SIGKILL)
        view.wait()
        # looked for at once: any top that starts, in a test beside this one too,
        # removes the folders of ended ones
        assert len(folders_of(view.pid)) == 1
    finally:
        view.kill()
        view.wait()
    with ControlBlock.open(grower.pid) as block:  # open until its deadline
        status = block.request(CMD_STATUS)
    assert status.capturing
    # each refresh, the first after started_ns and the last before now, moved the
    # deadline to an interval and the grace from its time
    grace_ns = (0.5 + VIEW_GRACE_S) * 1e9
    assert started_ns + grace_ns <= status.window_deadline_ns <= time.time_ns() + grace_ns
    wait_for(
        lambda: state_of(grower.pid)[0] == "idle", 0.5 + VIEW_GRACE_S + 3, "the window's deadline"
    )
    assert time.time_ns() >= status.window_deadline_ns
    assert state_of(grower.pid) == ("idle", "")  # a view's window writes no file
    # the next view removes the folder the killed one left
    top(grower.pid, "-n", "1", "--interval", "0.3")
    assert folders_of(view.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_batch_ended_by_signals_closes_its_window_cleanly(grower, sig):
    """The signal comes again and again until top has ended, so some land while it
    closes its window: each only asks top to stop, none cuts the closing short."""
    view = subprocess.Popen(
        [MEM_PROFILER, "top", "-p", str(grower.pid), "--interval", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert view.stdout is not None and view.stderr is not None
    try:
        while view.stdout.readline().strip():  # the first refresh
            pass
        assert state_of(grower.pid)[0] == "capturing"
        sent = 0
        while view.poll() is None:
            view.send_signal(sig)
            sent += 1
            time.sleep(0.002)
        err = view.stderr.read()
    finally:
        view.kill()
        view.wait()
    # 0, or the signal's own status (and click's newline) when one came after top had
    # put its handlers back
    assert view.returncode in (0, -sig) and err.strip() == "", (view.returncode, sent, err)
    assert state_of(grower.pid)[0] == "idle"  # closed by top, long before its deadline
    assert folders_of(view.pid) == []


def test_a_window_open_already_is_read_and_stays_open(build_fixture, tmp_path):
    runner = subprocess.Popen(
        [MEM_PROFILER, "run", "-o", str(tmp_path / "run_"), "--", str(build_fixture("grower"))],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | grower_env(tmp_path),
    )
    assert runner.stdout is not None
    try:
        pid = int(runner.stdout.readline().split()[1])
    except (IndexError, ValueError):
        runner.kill()
        runner.wait()
        raise
    try:
        wait_for(lambda: os.path.exists(segment_path(pid)), what="its control block")
        refreshes = top(pid, "-n", "2", "--interval", "1", "--sort", "growth")
        for refresh in refreshes:
            assert "a window open already (read only)" in refresh.header[1]
            assert refresh.rows[0].site == "site_grow"
            check_grower_rows(refresh.rows, refresh.interval_s, tmp_path)
        assert_grown_as_allocated(refreshes)
        assert state_of(pid) == ("capturing", "")
        # a window opened in the program gets no deadline from a controller
        with ControlBlock.open(pid) as block:
            block.lock()
            with pytest.raises(ControlError, match="refused the request: Invalid argument"):
                block.request(CMD_DEADLINE, deadline_ns=time.time_ns() + 10**9)
            assert block.request(CMD_STATUS).window_deadline_ns == 0
        # snapshots took no sequence number: the window's first dump is still .0001
        dump = subprocess.run(
            [MEM_PROFILER, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30
        )
        assert dump.stdout.strip() == str(tmp_path / f"run_{pid}.0001.heap"), dump.stderr
        assert state_of(pid)[0] == "capturing"
    finally:
        os.kill(pid, signal.SIGKILL)
        runner.wait(timeout=10)
        Path(segment_path(pid)).unlink(missing_ok=True)  # killed: no exit handler ran


def test_top_attaches_to_a_process_started_without_the_sampler(grower_exe, tmp_path):
    plain = subprocess.Popen(
        [str(grower_exe)],
        stdout=subprocess.PIPE,
        text=True,
        env=WITHOUT_SAMPLER | grower_env(tmp_path),
    )
    assert plain.stdout is not None
    try:
        plain.stdout.readline()
        proc = subprocess.run(
            [
                MEM_PROFILER,
                "top",
                "-p",
                str(plain.pid),
                "--attach",
                "-n",
                "3",
                "--interval",
                "1",
                "--sort",
                "growth",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == f"mem_profiler: loaded the sampler into process {plain.pid}\n"
        refreshes = parse_batch(proc.stdout)
        assert [r.number for r in refreshes] == [1, 2, 3]
        for refresh in refreshes:
            assert refresh.rows[0].site == "site_grow"
            check_grower_rows(refresh.rows, refresh.interval_s, tmp_path)
        assert_grown_as_allocated(refreshes)
        assert state_of(plain.pid) == ("idle (attached)", "")
    finally:
        plain.kill()
        plain.wait()
        Path(segment_path(plain.pid)).unlink(missing_ok=True)  # killed: no exit handler ran


def test_refusals_are_one_sentence(grower_exe):
    gone = subprocess.Popen(["true"])
    gone.wait()
    plain = subprocess.Popen([str(grower_exe)], stdout=subprocess.DEVNULL, env=WITHOUT_SAMPLER)
    try:
        for pid, message in (
            (gone.pid, no_such_process(gone.pid)),
            (
                plain.pid,
                f"process {plain.pid} does not have the sampler loaded: load it "
                f"now with `mem_profiler top -p {plain.pid} --attach`, or start the program "
                "with `mem_profiler run --idle -- CMD` or `LD_PRELOAD=$(mem_profiler lib) "
                "CMD`",
            ),
        ):
            proc = subprocess.run(
                [MEM_PROFILER, "top", "-p", str(pid), "-n", "1"],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
            assert (proc.returncode, proc.stdout, proc.stderr) == (
                1,
                "",
                f"mem_profiler: {message}\n",
            )
    finally:
        plain.kill()
        plain.wait()
