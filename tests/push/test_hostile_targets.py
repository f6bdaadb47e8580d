"""A target that lies: another user's process whose snapshots name root's files and
processes. The pusher (root, as the agent runs) takes who runs what from the kernel, and
reads a file for the target's sake only where the target's user may."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import IO

import pytest
from support.backends import Backend
from support.paths import FIXTURES, MEM_PROFILER
from support.processes import wait_for
from support.profiling import build_id

from mem_profiler import live_view
from mem_profiler.control.control_block import (
    ABI,
    CMD_SNAPSHOT,
    CMD_START,
    CMD_STOP,
    FILE_SIZE,
    MAGIC,
    ffi,
    find_block,
)
from mem_profiler.control.sampler_lib import library_path
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.live_view import LiveView
from mem_profiler.parser.read.window_snapshot import WindowCap
from mem_profiler.parser.report.pprof import sample_arrays
from mem_profiler.push.backends.series import series_labels
from mem_profiler.push.periods import Periods
from mem_profiler.push.sender import END_DRAIN_S
from mem_profiler.push.session import AGENT_END_S

NOBODY = 65534
# the same program with its functions named as root's secret copy names them (names of
# the same length: the code, and where it lies, is the same)
SECRET_NAMES = ("-Dsite_keep=ROOTONLY1", "-Dsite_churn=ROOTONLY_2")


@pytest.fixture
def nobodys_program(build_fixture):
    """push_steps copied where nobody may run it, running as nobody with the sampler."""
    if os.geteuid() != 0:
        pytest.skip("needs root, as the agent runs, to start a process of nobody's")
    folder = Path(tempfile.mkdtemp(prefix="memprof_nobody."))
    try:
        folder.chmod(0o755)
        exe = folder / "push_steps"
        shutil.copy(build_fixture("push_steps"), exe)
        exe.chmod(0o755)
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "env", f"LD_PRELOAD={library_path()}", exe, "60"],
            stdout=subprocess.PIPE, text=True, cwd=folder,
        )  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
            wait_for(lambda: find_block(proc.pid), what="the target's control block")
            yield proc.pid, exe
        finally:
            proc.kill()
            proc.wait()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"/dev/shm/mem_profiler.{proc.pid}")  # its block, left by the kill
    finally:
        shutil.rmtree(folder)


def test_a_lying_snapshot_names_nothing_of_roots(nobodys_program, build_fixture, tmp_path,
                                                 monkeypatch):  # fmt: skip
    pid, exe = nobodys_program
    secret_folder = tmp_path / "secret"
    secret_folder.mkdir(mode=0o700)
    secret = secret_folder / "prog"
    shutil.copy(build_fixture("push_steps", *SECRET_NAMES, output="push_steps_secret"), secret)
    secret_id = build_id(secret)

    real_read = live_view.read_snapshot

    # what a target of nobody's may write in its snapshot
    def lying(path: str, cap: WindowCap | None):
        snap = real_read(path, cap)
        head = snap.head
        maps = [dataclasses.replace(m, path=str(secret)) if m.path == str(exe) else m
                for m in head.mappings]  # fmt: skip
        snap.head = dataclasses.replace(
            head, exe=str(secret), pid=1, cmdline="sshd: root@pts/0", mappings=maps,
            build_ids={**head.build_ids, str(secret): secret_id},
        )  # fmt: skip
        return snap

    monkeypatch.setattr(live_view, "read_snapshot", lying)
    periods = Periods(pid)
    with LiveView(pid, CaptureSettings(rate=1), 5.0, "mem_profiler", 60) as view:

        def allocated() -> list:
            snap = view.snapshot()
            cut = periods.cut(snap.window, snap.time_ns)
            values = sample_arrays(cut[0].tables.samples).values
            return [cut] if len(values) and values[:, 1].sum() > 0 else []

        # the window opened after the program kept its 8 MiB: its churn, every ms
        cut = wait_for(allocated, what="a period with something allocated")[0]
    host = cut[0]
    names = {f.name for f in host.tables.functions}
    labels = series_labels(host, {})
    warnings = " ".join(host.warnings)
    assert not [n for n in names if "ROOTONLY" in n], names
    assert "site_churn" in names, names  # nobody's program, which nobody may read, is read
    assert (labels["pid"], labels["service_name"], labels["exe"]) == (
        str(pid),
        "push_steps",
        str(exe),
    )
    assert secret_id not in warnings and str(secret) not in str(labels), warnings


STALLING_BLOCK = FIXTURES / "stalling_block.py"
BLOCK_FIELDS = (
    "magic", "abi", "pid", "uid", "start_time", "exe", "command_seq", "command", "working",
    "prefix", "ack_seq", "result", "state", "window_start_ns", "snapshot_token",
)  # fmt: skip


class Heard:
    """What a process writes to a pipe, read as it comes (never waiting on the pipe)."""

    def __init__(self, pipe: IO) -> None:
        self._fd = pipe.fileno()
        os.set_blocking(self._fd, False)
        self.text = ""  # all of it so far
        self._unread = ""

    def wait_for(self, text: str, timeout: float = 30, what: str = "") -> None:
        """Until `text` comes after what the last wait found."""

        def came() -> bool:
            with contextlib.suppress(BlockingIOError):
                more = os.read(self._fd, 4096).decode(errors="replace")
                self.text, self._unread = self.text + more, self._unread + more
            before, found, after = self._unread.partition(text)
            self._unread = after if found else self._unread
            return bool(found)

        wait_for(came, timeout, what or repr(text))


class FakeTarget:
    """A process of nobody's posing as one with the sampler (tests/fixtures/
    stalling_block.py, in `mode`), once its block is made; `said` polls for its lines."""

    def __init__(self, mode: str) -> None:
        layout = {
            "file_size": FILE_SIZE,
            "magic": MAGIC,
            "abi": ABI,
            "offsets": {f: ffi.offsetof("struct memprof_control", f) for f in BLOCK_FIELDS},
            "commands": {"start": CMD_START, "stop": CMD_STOP, "snapshot": CMD_SNAPSHOT},
        }
        self.proc = as_nobody(
            "/usr/bin/python3", STALLING_BLOCK, json.dumps(layout), mode, stdout=subprocess.PIPE
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        self._stdout = Heard(self.proc.stdout)
        self.said("ready")

    def said(self, line: str, timeout: float = 30) -> None:
        self._stdout.wait_for(line + "\n", timeout, f"the fake's {line!r}")

    def end(self) -> None:
        self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/dev/shm/mem_profiler.{self.pid}")  # the fake's, killed


def as_nobody(*argv: str | Path, **popen: object) -> subprocess.Popen:
    return subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *map(str, argv)],
        **popen,  # type: ignore[call-overload]
    )


@pytest.mark.alone  # the agent pushes every process with the sampler
def test_a_target_that_never_answers_costs_the_agent_only_its_own_series(nobodys_program):
    """A process of nobody's with a block that says "working" at every request and never
    answers: the agent goes on pushing the honest process every period, and ends at
    SIGTERM within its end's bound."""
    honest_pid, _ = nobodys_program
    stalling = FakeTarget("stall")
    agent = None
    try:
        with Backend() as backend:
            agent = agent_pushing(backend)
            stalling.said("asked")  # the agent asked, and waits
            wait_for(lambda: pushes_of(backend, honest_pid) >= 6, 30, "the honest one's pushes")
            err = ended_by_sigterm(agent)
    finally:
        stalling.end()
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, err
    assert "Traceback" not in err
    assert f"process {stalling.pid} is slow to answer: its periods wait" in err, err


@pytest.mark.alone  # the agent pushes every process with the sampler
def test_snapshots_that_are_not_files_of_the_target_cost_only_its_series(nobodys_program):
    """Processes of nobody's that answer a snapshot request with a directory, a link to
    root's /etc/shadow or bytes that are no snapshot, in its place: each is let go, said,
    tried again later; the honest process is pushed throughout."""
    honest_pid, _ = nobodys_program
    fakes = [FakeTarget(mode) for mode in ("directory", "link", "garbage")]
    agent = None
    try:
        with Backend() as backend:
            agent = agent_pushing(backend)
            for fake in fakes:
                fake.said("planted")
            start = pushes_of(backend, honest_pid)
            wait_for(lambda: pushes_of(backend, honest_pid) >= start + 4, 30, "more pushes")
            err = ended_by_sigterm(agent)
    finally:
        for fake in fakes:
            fake.end()
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, err
    assert "Traceback" not in err and "shadow" not in err.replace("/etc/shadow,", ""), err
    for fake in fakes:
        said = rf"process {fake.pid}: process {fake.pid} wrote a snapshot that cannot be read"
        assert re.search(said + r".*; it is not pushed, tried again in 60 s", err), err


@pytest.mark.alone  # the agent pushes every process with the sampler
def test_a_pid_refused_once_is_tried_afresh_in_its_next_process():
    """A lying process of nobody's is refused (tried again in 60 s); it ends, and the
    kernel hands its pid to an honest process with the sampler: that one is pushed at
    once, not skipped for the 60 s of the pid's last holder."""
    liar = FakeTarget("garbage")
    agent = honest = None
    try:
        with Backend() as backend:
            agent = agent_pushing(backend)
            assert agent.stderr is not None
            stderr = Heard(agent.stderr)
            stderr.wait_for(f"process {liar.pid}: process {liar.pid} wrote a snapshot")
            liar.end()
            honest = with_pid(liar.pid, "env", f"LD_PRELOAD={library_path()}", "sleep", "60")
            wait_for(lambda: pushes_of(backend, liar.pid) >= 2, 30, "the pid's new process pushed")
            err = stderr.text + ended_by_sigterm(agent)
    finally:
        liar.end()
        for proc in (honest, agent):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert agent.returncode == 0, err
    assert "Traceback" not in err, err


@pytest.mark.alone  # the agent pushes every process with the sampler
def test_a_window_past_the_agents_cap_costs_only_its_own_series(
    nobodys_program, build_fixture, tmp_path
):
    """A process whose window holds 5,000 stacks, under an agent that keeps 1,000 of a
    process: let go at its first snapshot, said once with the cap and how to raise it,
    never pushed; the honest process beside it is pushed throughout."""
    honest_pid, _ = nobodys_program
    sampled = {"MEMPROF_CAPTURE": "1", "MEMPROF_RATE": "1", "MEMPROF_PREFIX": f"{tmp_path}/b_"}
    big = subprocess.Popen(
        [build_fixture("distinct_stacks"), "5000", "wait"],
        env={**os.environ, "LD_PRELOAD": str(library_path()), **sampled},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    agent = None
    try:
        assert big.stdout is not None and big.stdout.readline() == "ready\n"
        with Backend() as backend:
            agent = agent_pushing(backend, "--max-stacks", "1000")
            wait_for(lambda: pushes_of(backend, honest_pid) >= 6, 30, "the honest one's pushes")
            err = ended_by_sigterm(agent)
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        big.communicate(timeout=60)  # its stdin closed: it ends
    assert agent.returncode == 0, err
    assert pushes_of(backend, big.pid) == 0
    said = re.findall(rf"process {big.pid}: the window of process {big.pid} (.*)", err)
    assert len(said) == 1, err
    assert re.fullmatch(
        r"holds 5,00\d stacks in a call tree of [\d,]+ nodes, more than the 1,000 stacks and"
        r" 32,000 nodes kept of one window \(agent --max-stacks raises it\); it is not pushed,"
        r" tried again in 60 s",
        said[0],
    ), err
    assert f"pushing process {big.pid} " not in err, err


def with_pid(pid: int, *argv: str) -> subprocess.Popen:
    """argv run as nobody in process `pid`, the kernel's next pid set to it (root's
    /proc/sys/kernel/ns_last_pid) until a fork meanwhile no longer takes it first."""
    for _ in range(100):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        proc = as_nobody(*argv)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    pytest.fail(f"pid {pid} was taken by another process 100 times")


def agent_pushing(backend: Backend, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [MEM_PROFILER, "agent", "--push", backend.url, "--push-protocol", "pyroscope",
         "--push-every", "0.5", *options],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def pushes_of(backend: Backend, pid: int) -> int:
    return sum(p.labels.get("pid") == str(pid) for p in backend.pushes)


def ended_by_sigterm(agent: subprocess.Popen) -> str:
    """The agent's stderr, once SIGTERM ended it within its end's bound."""
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=END_DRAIN_S + 2 * AGENT_END_S + 10)
    return err


@pytest.mark.alone  # the agent pushes every process with the sampler
def test_a_crowd_of_short_lived_processes_is_said_in_a_line_a_round():
    """Forty processes come and go at once: the agent pushes them all and says so (and
    that they are slow to answer, and that they ended) in a line a round, not a line per
    process and event."""
    crowd = 40
    env = dict(os.environ, LD_PRELOAD=str(library_path()))
    procs = [subprocess.Popen(["sleep", "10"], env=env) for _ in range(crowd)]
    agent: subprocess.Popen | None = None
    try:
        wait_for(lambda: all(find_block(p.pid) for p in procs), what="the crowd's blocks")
        with Backend() as backend:
            agent = agent_pushing(backend)
            pids = {str(p.pid) for p in procs}
            wait_for(
                lambda: pids <= {p.labels.get("pid") for p in backend.pushes},
                timeout=30,
                what="a push of each of the crowd",
            )
            for p in procs:
                p.wait(timeout=60)
            err = ended_by_sigterm(agent)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, err
    came = sum(int(n) for n in re.findall(r"pushing (\d+) more process", err))
    came += len(re.findall(r"pushing process \d+ ", err))
    assert came == crowd, err
    assert len(err.splitlines()) < 12, err  # the crowd's ends too, those seen by then
