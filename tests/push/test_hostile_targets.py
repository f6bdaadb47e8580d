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

import pytest
from support.backends import Backend
from support.paths import MEM_PROFILER
from support.processes import wait_for

from mem_profiler import live_view
from mem_profiler.control_block import ABI, FILE_SIZE, MAGIC, ffi, find_block
from mem_profiler.live_view import LiveView
from mem_profiler.parser.report.pprof import sample_arrays
from mem_profiler.push.backends import series_labels
from mem_profiler.push.periods import Periods
from mem_profiler.push.sender import END_DRAIN_S
from mem_profiler.push.session import AGENT_END_S
from mem_profiler.sampler_lib import library_path

NOBODY = 65534
# the same program with its functions named as root's secret copy names them (names of
# the same length: the code, and where it lies, is the same)
SECRET_NAMES = ("-Dsite_keep=ROOTONLY1", "-Dsite_churn=ROOTONLY_2")


def build_id(exe: Path) -> str:
    notes = subprocess.run(["readelf", "-n", exe], capture_output=True, text=True).stdout
    found = re.search(r"Build ID: ([0-9a-f]+)", notes)
    assert found, notes
    return found[1]


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

    def lying(path: str):  # what a target of nobody's may write in its snapshot
        snap = real_read(path)
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
    with LiveView(pid, 1, 64, 5.0, "mem_profiler", 60) as view:

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


STALLING_BLOCK = Path(__file__).parents[1] / "fixtures" / "stalling_block.py"
BLOCK_FIELDS = ("magic", "abi", "pid", "uid", "start_time", "exe", "command_seq", "working")


def as_nobody(*argv: str | Path, **popen: object) -> subprocess.Popen:
    return subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *map(str, argv)],
        **popen,  # type: ignore[call-overload]
    )


@pytest.mark.alone  # the agent pushes every process with the sampler
def test_a_target_that_never_answers_costs_the_agent_only_its_own_series(nobodys_program, tmp_path):
    """A process of nobody's with a block that says "working" at every request and never
    answers: the agent goes on pushing the honest process every period, and ends at
    SIGTERM within its end's bound."""
    honest_pid, _ = nobodys_program
    layout = {
        "file_size": FILE_SIZE,
        "magic": MAGIC,
        "abi": ABI,
        "offsets": {f: ffi.offsetof("struct memprof_control", f) for f in BLOCK_FIELDS},
    }
    stalling = as_nobody(
        "/usr/bin/python3", STALLING_BLOCK, json.dumps(layout), stdout=subprocess.PIPE, text=True
    )
    agent = None
    try:
        assert stalling.stdout is not None and stalling.stdout.readline() == "ready\n"
        with Backend() as backend:
            agent = subprocess.Popen(
                [MEM_PROFILER, "agent", "--push", backend.url, "--push-protocol", "pyroscope",
                 "--push-every", "0.5"],
                stderr=subprocess.PIPE, text=True, start_new_session=True,
            )  # fmt: skip
            assert stalling.stdout.readline() == "asked\n"  # the agent asked, and waits

            def honest_pushes() -> int:
                return sum(p.labels.get("pid") == str(honest_pid) for p in backend.pushes)

            wait_for(lambda: honest_pushes() >= 6, timeout=30, what="the honest process's pushes")
            agent.send_signal(signal.SIGTERM)
            _, err = agent.communicate(timeout=END_DRAIN_S + AGENT_END_S + 10)
        assert agent.returncode == 0, err
        assert "Traceback" not in err
        assert f"process {stalling.pid} is slow to answer: its periods wait" in err, err
    finally:
        for proc in (agent, stalling):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/dev/shm/mem_profiler.{stalling.pid}")  # the fake's, killed


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
            agent = subprocess.Popen(
                [MEM_PROFILER, "agent", "--push", backend.url, "--push-protocol", "pyroscope",
                 "--push-every", "0.5"],
                stderr=subprocess.PIPE, text=True, start_new_session=True,
            )  # fmt: skip
            pids = {str(p.pid) for p in procs}
            wait_for(
                lambda: pids <= {p.labels.get("pid") for p in backend.pushes},
                timeout=30,
                what="a push of each of the crowd",
            )
            for p in procs:
                p.wait(timeout=60)
            agent.send_signal(signal.SIGTERM)
            _, err = agent.communicate(timeout=END_DRAIN_S + AGENT_END_S + 10)
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
