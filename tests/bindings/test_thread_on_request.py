"""A control thread made on request (issue 23): a zygote checks that it has one thread
before it forks its sandboxed children, so a process started with --type=zygote (or
MEMPROF_CONTROL=on-request) gets its control block but no thread until a controller
asks. The controller wakes it through the block's wake page; its next allocation makes
the thread. Real preloaded targets (tests/fixtures/server.c), the real controller, and
Debian's Chromium with its zygote."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.chromium import chromium
from support.paths import LIBMEMPROF, MEM_PROFILER
from support.processes import wait_for
from support.profiling import capture_cli
from support.targets import Server

from mem_profiler.control import procfs
from mem_profiler.control.control_block import block_pid, segment_path
from mem_profiler.control.controller import capture_window
from mem_profiler.control.settings import CaptureSettings

ON_REQUEST = {"MEMPROF_CONTROL": "on-request"}


def chromium_pid(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/exe").startswith("/usr/lib/chromium/")
    except OSError:
        return True  # ended since: one of the processes the test started


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_one_thread_until_a_controller_asks(server_exe, tmp_path):
    s = Server(server_exe, sampler_env=ON_REQUEST)
    try:
        assert threads(s.pid) == 1
        for n in range(2):  # the first window makes the thread, the second finds it
            result = capture_window(
                s.pid, 0.3, CaptureSettings(rate=1024, depth=64, prefix=str(tmp_path / "r_"))
            )
            assert [Path(p).name for p in result.paths] == [f"r_{s.pid}.{n + 1:04d}.heap"]
            s.check_window(Path(result.paths[0]))
            assert threads(s.pid) == 2
    finally:
        s.stop()


def test_a_zygote_is_so_by_itself_and_so_are_its_children(server_exe, tmp_path):
    """Chromium's zygote is started with --type=zygote; a forked child keeps its
    parent's arguments and gets a thread-less block of its own."""
    s = Server(server_exe, "fork", "--type=zygote")
    try:
        parent, child = s.pids
        assert threads(parent) == 1 and threads(child) == 1
        result = capture_window(
            child, 0.3, CaptureSettings(rate=1024, depth=64, prefix=str(tmp_path / "z_"))
        )
        s.check_window(Path(result.paths[0]))
        assert threads(child) == 2 and threads(parent) == 1
    finally:
        s.stop()


def test_a_window_opened_in_process_answers_a_dump(server_exe, tmp_path):
    """While `run`'s window is open the process has no thread either; a sample finds
    the request."""
    prefix = tmp_path / "in_"
    s = Server(
        server_exe,
        sampler_env={**ON_REQUEST, "MEMPROF_CAPTURE": "1", "MEMPROF_PREFIX": str(prefix)},
    )
    try:
        assert threads(s.pid) == 1
        proc = subprocess.run(
            [MEM_PROFILER, "dump", "-p", str(s.pid)], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert proc.stdout.strip() == f"{prefix}{s.pid}.0001.heap"
        s.check_window(Path(proc.stdout.strip()))
        assert threads(s.pid) == 2
    finally:
        s.stop()


def test_a_process_that_does_not_allocate_is_said_to(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROF_")}
    env.update(ON_REQUEST, LD_PRELOAD=str(LIBMEMPROF))
    sleeper = subprocess.Popen(["sleep", "120"], env=env)
    try:
        wait_for(lambda: os.path.exists(segment_path(sleeper.pid)), what="a control block")
        proc = capture_cli(sleeper.pid, "-s", "0.2", "-o", tmp_path / "s_")
        assert proc.returncode != 0 and threads(sleeper.pid) == 1
        assert proc.stderr == (
            f"mem_profiler: process {sleeper.pid} makes its control thread when asked, at its "
            "next allocation, and has not allocated within 5 s: ask again once it works\n"
        )
    finally:
        sleeper.kill()
        sleeper.wait()
        Path(segment_path(sleeper.pid)).unlink(missing_ok=True)


@pytest.mark.parametrize("zygote", [True, False], ids=["zygote", "no-zygote"])
def test_chromium_runs_under_the_sampler(tmp_path, zygote):
    """Debian's Chromium with the sampler in every process it starts: its zygote, which
    aborts the browser when it finds a second thread, is thread-less; the DOM is the one
    Chromium prints without the sampler, and the profile says Chromium's malloc is its
    own (PartitionAlloc)."""
    page = tmp_path / "page.html"
    page.write_text(
        '<p id="x">six times seven is</p>'
        "<script>document.getElementById('x').textContent += ' ' + 6 * 7</script>"
    )
    args = ["--dump-dom", page.as_uri(), *([] if zygote else ["--no-zygote"])]
    blocks_before = set(os.listdir("/dev/shm"))
    plain = chromium(*args, profile_dir=tmp_path / "plain")
    launcher = [MEM_PROFILER, "run", "--follow-children", "-c", "524288", "-o", tmp_path / "c_"]
    try:
        profiled = chromium(*args, profile_dir=tmp_path / "profiled", launcher=launcher)
    finally:
        # Chromium kills its zygotes as it exits: no exit handler removes their blocks.
        for name in set(os.listdir("/dev/shm")) - blocks_before:
            pid = block_pid(name)
            if pid is not None and procfs.start_time(pid) is not None and not chromium_pid(pid):
                continue  # another program's, started meanwhile
            if pid is not None:
                wait_for(lambda pid=pid: procfs.start_time(pid) is None, what="its end")
                os.unlink(f"/dev/shm/{name}")
    assert "six times seven is 42" in plain.stdout and profiled.stdout == plain.stdout
    assert (
        "mem_profiler: chromium has a malloc of its own (in /usr/lib/chromium/chromium)"
        in profiled.stderr
    )
    assert len(list(tmp_path.glob("c_*.heap"))) >= 3  # the browser and the processes it started
