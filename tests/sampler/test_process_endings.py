"""The process ends exactly as it would without the sampler, whatever its threads do
(issue 11): pthread_getattr_np (which mallocs under the thread's lock), pthread_exit
from main, _exit, exec, fatal signals; the control thread never keeps a process alive
nor holds back a signal sent to it.  A program that SIGTERM, SIGINT, SIGHUP or SIGQUIT
ends at its default action still leaves its profile, and its own handler stays in
charge (issue 48)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.interpreters import DEBIAN_PYTHON
from support.paths import LIBMEMPROF, MEM_PROFILER
from support.profiling import one_heap, profile_run, report
from support.sampling_math import assert_estimate, relative_sd

from mem_profiler.control.control_block import segment_path
from mem_profiler.control.controller import ControlError, attach, capture_window
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.parser.read.heap_file import read_heap

UNWINDERS = ("hybrid", "libunwind", "fp")
SERVED = 2000 * 4096  # what `endings serve` keeps


@pytest.mark.parametrize("unwinder", UNWINDERS)
def test_pthread_getattr_np_in_every_thread(build_fixture, tmp_path, unwinder):
    exe = build_fixture("endings")
    proc, files = profile_run(
        [exe, "getattr"], tmp_path / "g_", 1, "--unwind", unwinder, timeout=20
    )
    assert proc.returncode == 0, proc.stderr
    assert report(one_heap(proc, files), exe)["getattr_work"][1] == 100 * 1000


@pytest.mark.parametrize("mode", ["main_exit", "raw_exit", "exec", "segv"])
def test_status_is_the_plain_programs(build_fixture, tmp_path, mode):
    exe = build_fixture("endings")
    plain = subprocess.run([exe, mode], capture_output=True, timeout=20)
    started = time.monotonic()
    proc, _ = profile_run([exe, mode], tmp_path / "s_", 1, timeout=20)
    assert proc.returncode == (
        plain.returncode if plain.returncode >= 0 else 128 - plain.returncode
    )
    assert time.monotonic() - started < 5


def test_a_process_ended_by__exit_leaves_its_profile(build_fixture, tmp_path):
    """_exit runs no exit handler, so the control thread writes the files first."""
    exe = build_fixture("endings")
    proc, files = profile_run([exe, "kept_exit"], tmp_path / "x_", 1, timeout=20)
    assert proc.returncode == 3, proc.stderr
    assert len(files) == 1, proc.stderr
    assert report(files[0], exe)["getattr_work"][1] == 100 * 1000


@pytest.mark.parametrize("follow", [True, False], ids=["--follow-fork", "not followed"])
def test_forked_children_that_end_with__exit(build_fixture, tmp_path, follow):
    """As Python's multiprocessing workers end: a followed child writes its own files;
    a vfork child, sharing the parent's memory, writes nothing and leaves the parent's
    window as it was."""
    exe = build_fixture("endings")
    extra = ["--follow-fork"] if follow else []
    proc, files = profile_run([exe, "fork_exit"], tmp_path / "f_", 1, *extra, timeout=20)
    assert proc.returncode == 0, proc.stderr
    children = [f for f in files if "forked_from" in read_heap(f).meta]
    (parent,) = set(files) - set(children)
    assert report(parent, exe)["worker_after_main"][1] == 50 * 3000
    assert "getattr_work" not in report(parent, exe)
    if follow:
        (child,) = children
        assert report(child, exe)["getattr_work"][1] == 100 * 1000
    else:
        assert children == []


POOL = """
import multiprocessing, sys
def work(n):
    return len([bytearray(100_000) for _ in range(50)])
if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    with multiprocessing.Pool(2) as pool:
        assert sum(pool.map(work, range(4), chunksize=1)) == 200
        pool.close()
        pool.join()  # its workers end with os._exit
"""


def test_python_multiprocessing_workers_leave_their_profiles(tmp_path):
    script = tmp_path / "tasks.py"
    script.write_text(POOL)
    proc, files = profile_run(
        [DEBIAN_PYTHON, script], tmp_path / "p_", 1, "--follow-fork", timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    workers = [f for f in files if "forked_from" in read_heap(f).meta]
    assert len(workers) == 2, proc.stderr
    work = "work.<locals>.<listcomp> (tasks.py)"
    allocated = sum(
        report(f, Path(DEBIAN_PYTHON), "alloc_space").get(work, (0, 0))[1] for f in workers
    )
    # 4 tasks of 50 buffers of 100,000 B (and their objects and list, a little more), in
    # whichever worker took each
    assert 4 * 50 * 100_001 <= allocated <= 4 * 50 * 100_001 * 1.002


def test_last_worker_after_pthread_exit_from_main_ends_the_process(build_fixture, tmp_path):
    """glibc's exit(0) runs when the last thread ends: the dump is written then."""
    exe = build_fixture("endings")
    started = time.monotonic()
    proc, files = profile_run([exe, "worker_after", "300"], tmp_path / "w_", 1, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 5
    assert report(one_heap(proc, files), exe)["worker_after_main"][1] == 50 * 3000


def start_waiting(exe, main_ms: int, env=None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(exe), "wait_stdin", str(main_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sigterm_after_pthread_exit_from_main(build_fixture, clean_env):
    exe = build_fixture("endings")
    proc = start_waiting(exe, 0, {"LD_PRELOAD": str(LIBMEMPROF), "PATH": "/usr/bin:/bin"})
    try:
        wait_for_main_to_end(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def wait_for_main_to_end(pid: int) -> None:
    end = time.monotonic() + 5
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < end, "main never called pthread_exit"
        time.sleep(0.01)


@pytest.mark.parametrize("main_ended", ["after the attach", "before the attach"])
def test_attached_and_main_ended_the_process_still_ends(build_fixture, clean_env, main_ended):
    """Attached and idle, no hook sees main's pthread_exit: the control thread finds
    it in /proc and leaves once the last worker has ended.  A process whose main thread
    ended first is attached through one of its other threads: its main thread, a zombie
    until the process ends, has no memory left to call dlopen in."""
    exe = build_fixture("endings")
    proc = start_waiting(exe, 1000 if main_ended == "after the attach" else 0)
    try:
        if main_ended == "before the attach":
            wait_for_main_to_end(proc.pid)
        attach(proc.pid)
        wait_for_main_to_end(proc.pid)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(timeout=5) == 0  # the control thread looks once a second
    finally:
        proc.kill()
        proc.wait()
        Path(segment_path(proc.pid)).unlink(missing_ok=True)


@pytest.mark.parametrize("sampler", ["attached", "preloaded"])
def test_a_window_on_a_process_whose_main_has_ended(build_fixture, clean_env, tmp_path, sampler):
    """Its threads go on, so it is no ended process: its worker's blocks are captured
    to the byte, and the window ends as the process does."""
    exe = build_fixture("endings")
    preload = {"LD_PRELOAD": str(LIBMEMPROF), "PATH": "/usr/bin:/bin"}
    proc = start_waiting(exe, 0, preload if sampler == "preloaded" else None)
    assert proc.stdin is not None
    stdin = proc.stdin

    def let_the_worker_go(elapsed, status) -> None:
        if not stdin.closed:
            stdin.write("go\n")
            stdin.close()

    try:
        wait_for_main_to_end(proc.pid)
        if sampler == "attached":
            attach(proc.pid)
        with pytest.raises(ControlError, match="ended during the capture; it left"):
            capture_window(
                proc.pid,
                60,
                CaptureSettings(rate=1, depth=64, prefix=str(tmp_path / "z_")),
                progress=let_the_worker_go,
            )
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()
        Path(segment_path(proc.pid)).unlink(missing_ok=True)
    (heap,) = tmp_path.glob("z_*.heap")
    assert report(heap, exe)["worker_after_main"][1] == 50 * 3000


def serving(exe: Path, mode: str, prefix: Path) -> subprocess.Popen:
    """`endings MODE` under `mem_profiler run`, once it serves; the signals that end it
    at their default actions, whatever the tests' runner was started with."""

    def defaults() -> None:
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)

    proc = subprocess.Popen(
        [MEM_PROFILER, "run", "-o", str(prefix), "--", str(exe), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=defaults,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "serving\n"
    return proc


def program_pid(run: subprocess.Popen) -> int:
    """The program `mem_profiler run` started, its only child."""
    children = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT])
def test_a_program_ended_by_a_signal_leaves_its_profile(build_fixture, tmp_path, sig):
    """Its window's files are written, then the signal takes its course: the status is
    the signal's (run passes it on as 128 + N)."""
    exe = build_fixture("endings")
    run = serving(exe, "serve", tmp_path / "sig_")
    try:
        os.kill(program_pid(run), sig)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 128 + sig, err
    (heap,) = tmp_path.glob("sig_*.heap")
    kept = report(heap, exe)["serve_request"][1]
    assert_estimate(kept, SERVED, relative_sd(2000, 4096, 1024), 0.05)


def test_a_programs_own_sigterm_handler_stays_in_charge(build_fixture, tmp_path):
    exe = build_fixture("endings")
    run = serving(exe, "serve_handler", tmp_path / "own_")
    try:
        os.kill(program_pid(run), signal.SIGTERM)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert (run.returncode, out) == (3, "stopped by its handler\n"), err
    (heap,) = tmp_path.glob("own_*.heap")  # written at its exit, as always
    kept = report(heap, exe)["serve_request"][1]
    assert_estimate(kept, SERVED, relative_sd(2000, 4096, 1024), 0.05)
