"""Capture in running processes through the shared-memory control block
(ARCHITECTURE.md, "The control block"): real preloaded targets, the real controller
(API and command line), real signals."""

from __future__ import annotations

import os
import pwd
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.paths import LIBMEMPROF, MEM_PROFILER, ROOT
from support.processes import in_a_pid_namespace, other_user, wait_for
from support.profiling import capture_cli, report, window_to_interrupt
from support.targets import Server

from mem_profiler.control import procfs
from mem_profiler.control.attach import ptrace
from mem_profiler.control.control_block import (
    CDEF,
    SEGMENT_DIR,
    SEGMENT_PREFIX,
    ControlError,
    ffi,
    segment_path,
    unlink_if_still,
)
from mem_profiler.control.controller import capture_window, list_targets
from mem_profiler.control.procfs import no_such_process
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.parser.read.heap_file import read_heap


def test_twenty_windows_in_a_row(server, server_exe, tmp_path):
    paths = []
    for _ in range(20):
        result = capture_window(
            server.pid, 0.25, CaptureSettings(rate=1024, depth=64, prefix=str(tmp_path / "svc_"))
        )
        paths += result.paths
    expected = [f"svc_{server.pid}.{i:04d}.heap" for i in range(1, 21)]
    assert [Path(p).name for p in paths] == expected
    for path in paths:
        server.check_window(Path(path))


def test_command_line_capture(server, server_exe, tmp_path):
    proc = capture_cli(server.pid, "-s", "0.5", "-c", "1024", "-o", tmp_path / "cli_")
    assert proc.returncode == 0, proc.stderr
    heap = tmp_path / f"cli_{server.pid}.0001.heap"
    assert proc.stdout == f"succeeded in collecting memory data!  {heap}\n"
    server.check_window(heap)
    listing = subprocess.run([MEM_PROFILER, "list"], capture_output=True, text=True).stdout
    assert f"{server.pid}  " in listing and str(heap) in listing


def test_dropped_samples_are_said_by_the_controller(server_exe, tmp_path):
    s = Server(server_exe, sampler_env={"MEMPROF_MAX_LIVE": "1000"})
    try:
        proc = capture_cli(s.pid, "-s", "0.3", "-c", "1", "-o", tmp_path / "d_")
    finally:
        s.stop()
    assert proc.returncode == 0, proc.stderr
    heap = tmp_path / f"d_{s.pid}.0001.heap"
    assert proc.stdout == f"succeeded in collecting memory data!  {heap}\n"
    dropped = read_heap(heap).dropped_samples
    assert dropped > 0
    assert proc.stderr == (
        f"mem_profiler: {dropped:,} samples were dropped (a table of the "
        "sampler was full): each report says what is missing\n"
    )


def test_dump_of_a_window_open_from_the_start_keeps_it_open(server_exe, tmp_path):
    """A window opened in-process (MEMPROF_CAPTURE=1, as `run` does) is refused to -p;
    dump writes its files while it goes on, each holding everything since it opened."""
    prefix = tmp_path / "in_"
    s = Server(server_exe, sampler_env={"MEMPROF_CAPTURE": "1", "MEMPROF_PREFIX": str(prefix)})
    try:
        dumps = []
        # the server runs its rings over once, then twice the iterations it had at the first
        # dump (noted every 256): the second holds twice the first's allocations
        wanted = 16384
        for _ in range(2):
            s.history.wait_until(s.pid, wanted)
            proc = subprocess.run(
                [MEM_PROFILER, "dump", "-p", str(s.pid)], capture_output=True, text=True, timeout=30
            )
            assert proc.returncode == 0 and proc.stderr == "", proc.stderr
            dumps.append(Path(proc.stdout.strip()))
            wanted = 2 * (s.history.latest(s.pid) + s.history.EVERY)
        assert dumps == [Path(f"{prefix}{s.pid}.{i:04d}.heap") for i in (1, 2)]
        (target,) = [t for t in list_targets() if t.pid == s.pid]
        assert target.state == "capturing"
        for dump in dumps:  # written while the program allocates: never more in use
            profile = read_heap(dump)
            assert (profile.cur_objs <= profile.acc_objs).all()
        first, second = (report(d, server_exe, "alloc_space") for d in dumps)
        assert second["site_transient"][1] > first["site_transient"][1] * 1.2
        s.check_window(dumps[1])
    finally:
        s.stop()


# Its window opened at load (MEMPROF_CAPTURE=1); a line on stdin closes it through the
# API: no controller ever asks this process anything.
CLOSES_ITS_WINDOW = """
import sys
sys.stdin.readline()
from mem_profiler import api
api.stop()
print("closed", flush=True)
sys.stdin.readline()
"""


def test_windows_opened_in_process_are_listed_as_they_are(tmp_path):
    """`list` reads the block without asking the process: a window the process opens or
    closes itself (`run`'s at load, the API's) is there without a controller's call."""
    env = {
        **os.environ,
        "LD_PRELOAD": str(LIBMEMPROF),
        "MEMPROF_CAPTURE": "1",
        "MEMPROF_PREFIX": str(tmp_path / "own_"),
        # the interpreter's allocators left alone: wrapping them wakes the control thread
        "MEMPROF_PYTHON": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CLOSES_ITS_WINDOW],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def listed(state: str) -> bool:
        return any(t.pid == proc.pid and t.state == state for t in list_targets())

    assert proc.stdin is not None and proc.stdout is not None
    try:
        wait_for(lambda: listed("capturing"), what="the window opened at load to be listed")
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "closed\n"
        wait_for(lambda: listed("idle"), what="the closed window to be listed")
    finally:
        proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
    assert (tmp_path / f"own_{proc.pid}.0001.heap").is_file()


@pytest.mark.parametrize("stopped_by", ["SIGSTOP", "a debugger"])
def test_a_stopped_process_is_said_to_be_stopped(server, tmp_path, stopped_by):
    """It cannot answer until it goes on: the refusal says so and how, and once it goes
    on a window works."""
    if stopped_by == "SIGSTOP":
        os.kill(server.pid, signal.SIGSTOP)
        why = f"is stopped (Ctrl-Z or SIGSTOP): continue it with `kill -CONT {server.pid}`"
    else:  # this test is the debugger, holding every thread as gdb does
        threads = sorted(procfs.thread_ids(server.pid))
        for tid in threads:
            ptrace.seize(tid)
            ptrace.interrupt(tid)
            ptrace.wait(tid)
        why = f"is held stopped by process {os.getpid()} (a debugger?): let it go on there"
    try:
        wait_for(lambda: procfs.why_stopped(server.pid), what="the stop")
        message = refusal("-p", str(server.pid), "-s", "1", "-o", str(tmp_path / "no_"))
        assert message == f"process {server.pid} {why}, then ask again"
    finally:
        if stopped_by == "SIGSTOP":
            os.kill(server.pid, signal.SIGCONT)
        else:
            for tid in threads:
                ptrace.detach(tid)
    assert list(tmp_path.iterdir()) == []
    result = capture_window(
        server.pid, 0.25, CaptureSettings(rate=1024, depth=64, prefix=str(tmp_path / "go_"))
    )
    server.check_window(Path(result.paths[0]))


def test_a_process_in_another_pid_namespace_is_captured_from_inside(build_fixture, tmp_path):
    """From here its control block cannot be found (it names it by its pid there): the
    refusal says so, and the command it gives captures the program from inside."""
    exe = build_fixture("endings")  # its worker waits for a line, main sleeps on
    env = {"LD_PRELOAD": str(LIBMEMPROF), "PATH": "/usr/bin:/bin"}
    proc, pid = in_a_pid_namespace([str(exe), "wait_stdin", "600000"], env, ready="ready")
    assert proc.stdin is not None and proc.stdout is not None
    try:
        namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
        assert refusal("-p", str(pid), "-s", "1") == (
            f"process {pid} runs in another PID namespace (a container?), as process 1 "
            f"there: capture it from inside, e.g. `nsenter --target {pid} --all "
            "mem_profiler -p 1`, with a mem_profiler installed in it"
        )
        inside = ["nsenter", "--target", str(pid), "--all", str(MEM_PROFILER)]
        window = subprocess.Popen(
            [*inside, "-p", "1", "-s", "60", "-c", "1", "-o", str(tmp_path / "ns_")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def capturing() -> bool:
            listing = subprocess.run([*inside, "list"], capture_output=True, text=True)
            return bool(re.search(r"^\s*1\s+\S+\s+capturing", listing.stdout, re.M))

        wait_for(capturing, 30, "the window inside the namespace")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "done\n"
        # Ctrl-C to the controller, nsenter's child
        (controller,) = Path(f"/proc/{window.pid}/task/{window.pid}/children").read_text().split()
        os.kill(int(controller), signal.SIGINT)
        out, err = window.communicate(timeout=60)
    finally:
        os.kill(pid, signal.SIGKILL)  # process 1 there: SIGKILL alone ends it
        proc.wait()
        remove_blocks_of(namespace)
    heap = tmp_path / "ns_1.0001.heap"
    assert window.returncode == 0 and out == f"succeeded in collecting memory data!  {heap}\n"
    assert report(heap, exe)["worker_after_main"][1] == 50 * 3000


def remove_blocks_of(namespace: int) -> None:
    """Removes the control blocks that a killed PID namespace's processes left: no
    controller cleans those of another namespace. Other tests plant links and FIFOs
    under the blocks' names: those are neither followed nor read."""
    size = ffi.sizeof("struct memprof_control")
    for path in Path(SEGMENT_DIR).glob(f"{SEGMENT_PREFIX}*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            head = os.read(fd, size) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        finally:
            os.close(fd)
        if (
            len(head) == size
            and ffi.from_buffer("struct memprof_control *", head).pid_ns == namespace
        ):
            path.unlink(missing_ok=True)


def test_dump_without_a_window_is_refused(server):
    assert refusal("dump", "-p", str(server.pid)) == (
        f"process {server.pid} has no window open: open one with "
        f"`mem_profiler -p {server.pid} -s SECONDS`"
    )


@pytest.mark.alone  # the only process with the sampler
def test_without_pid_the_only_capturable_process_is_taken(server, tmp_path):
    proc = subprocess.run(
        [MEM_PROFILER, "-s", "0.2", "-o", str(tmp_path / "one_")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / f"one_{server.pid}.0001.heap").is_file()


def test_controller_killed_the_target_dumps_at_its_deadline(server, server_exe, tmp_path):
    controller = window_to_interrupt(server.pid, "-s", "1", "-o", tmp_path / "orphan_")
    controller.kill()
    controller.communicate()
    heap = tmp_path / f"orphan_{server.pid}.0001.heap"
    wait_for(heap.is_file, timeout=10, what="the dump at the deadline")
    server.check_window(heap)
    (target,) = [t for t in list_targets() if t.pid == server.pid]
    assert (target.state, target.last_dump) == ("idle", str(heap))


def test_a_dead_controllers_window_is_refused_as_such(server, tmp_path):
    """Another window is refused while a killed controller's stays open to its deadline,
    saying so (not "started in-process") and how to close it now."""
    controller = window_to_interrupt(server.pid, "-s", "30", "-o", tmp_path / "orphan_")
    controller.kill()
    controller.communicate()
    said = refusal("-p", str(server.pid), "-s", "0.2", "-o", str(tmp_path / "next_"))
    detach = f"`mem_profiler detach -p {server.pid}`"
    told = re.fullmatch(
        f"process {server.pid} is already capturing, in a window opened by a mem_profiler"
        f" that has ended: it closes itself and writes its files in (\\d+) s, or at once"
        f" with {re.escape(detach)}",
        said,
    )
    assert told and 20 <= int(told[1]) <= 32, said  # a 30 s window, 2 s of grace
    proc = subprocess.run(
        [MEM_PROFILER, "detach", "-p", str(server.pid)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / f"orphan_{server.pid}.0001.heap").is_file()


def test_dump_during_another_controllers_window(server, tmp_path):
    """`dump` writes the open window's files whoever opened it, a live controller too,
    whose window goes on and ends with the next file."""
    prefix = tmp_path / "w_"
    controller = window_to_interrupt(server.pid, "-s", "30", "-o", prefix)
    try:
        proc = subprocess.run(
            [MEM_PROFILER, "dump", "-p", str(server.pid)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            0,
            f"{prefix}{server.pid}.0001.heap\n",
            "",
        )
        (target,) = [t for t in list_targets() if t.pid == server.pid]
        assert target.state == "capturing"
    finally:
        controller.send_signal(signal.SIGINT)
        out, err = controller.communicate(timeout=30)
    assert controller.returncode == 0, err
    assert out.split()[-1] == f"{prefix}{server.pid}.0002.heap"
    for seq in (1, 2):
        profile = read_heap(Path(f"{prefix}{server.pid}.{seq:04d}.heap"))
        assert (profile.cur_objs <= profile.acc_objs).all()


def test_target_killed_during_the_window(server, tmp_path):
    controller = subprocess.Popen(
        [MEM_PROFILER, "-p", str(server.pid), "-s", "30", "-o", str(tmp_path / "gone_")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(
        lambda: any(t.pid == server.pid and t.state == "capturing" for t in list_targets()),
        what="the window to open",
    )
    server.stop()
    out, err = controller.communicate(timeout=10)
    assert controller.returncode == 1
    assert err.strip() == (
        f"mem_profiler: process {server.pid} ended during the capture; nothing was collected"
    )
    assert list(tmp_path.iterdir()) == []


def test_target_that_execs_during_the_window_is_said_to(build_fixture, clean_env, tmp_path):
    """An exec ends the program that had the window (and its sampler): the controller
    says so at once, instead of waiting out its answer; the new image, preloaded too, is
    captured as any process."""
    target = subprocess.Popen(
        [build_fixture("endings"), "exec_stdin"],
        env=dict(os.environ, LD_PRELOAD=str(LIBMEMPROF)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert target.stdout is not None and target.stdin is not None
        assert target.stdout.readline() == "ready\n"
        controller = window_to_interrupt(target.pid, "-s", "60", "-o", tmp_path / "x_")
        target.stdin.write("exec\n")
        target.stdin.flush()
        out, err = controller.communicate(timeout=30)
        assert (controller.returncode, out) == (1, "")
        assert err == (
            f"mem_profiler: process {target.pid} ran exec (it now runs /usr/bin/dash): the"
            " sampler and any window went with the program it replaced; capture the new one"
            f" with `mem_profiler -p {target.pid}`\n"
        )
        again = capture_cli(target.pid, "-s", "0.2", "-o", tmp_path / "sh_")
        assert again.returncode == 0, again.stderr
        target.stdin.write("done\n")
        target.stdin.flush()
        assert target.wait(timeout=30) == 5
    finally:
        target.kill()
        target.wait()
    assert [p.name for p in tmp_path.iterdir()] == [f"sh_{target.pid}.0001.heap"]


def test_ctrl_c_ends_the_window_early_and_collects(server, server_exe, tmp_path):
    controller = window_to_interrupt(server.pid, "-s", "60", "-o", tmp_path / "int_")
    time.sleep(0.5)
    started = time.monotonic()
    controller.send_signal(signal.SIGINT)
    out, err = controller.communicate(timeout=10)
    assert controller.returncode == 0, err
    assert time.monotonic() - started < 5
    assert out.startswith("succeeded in collecting memory data!")
    server.check_window(tmp_path / f"int_{server.pid}.0001.heap")


def test_ctrl_c_the_moment_the_window_opens_still_collects(server, tmp_path):
    """However early Ctrl-C comes once the window was asked for (here: as soon as the
    target says it is capturing), the window is closed and its file written."""
    for attempt in range(1, 6):
        controller = window_to_interrupt(server.pid, "-s", "60", "-o", tmp_path / f"i{attempt}_")
        controller.send_signal(signal.SIGINT)
        out, err = controller.communicate(timeout=30)
        assert controller.returncode == 0, err
        heap = tmp_path / f"i{attempt}_{server.pid}.0001.heap"  # each prefix from 0001
        assert out == f"succeeded in collecting memory data!  {heap}\n"
        start, end = read_heap(heap).window_ns
        assert start is not None and end is not None
        assert 0 < end - start < 60e9  # ended by the interrupt, not its 60 s


def test_a_signal_while_the_main_thread_holds_the_events_lock_sets_it():
    """The interrupt's handler runs on the main thread wherever it is, here inside the
    event's own lock, which Event.wait holds as it starts and ends (the controller waits
    on it between ticks): setting the event from the handler would take that lock again
    and hang for ever, as a controller once did on a Ctrl-C the moment its window
    opened. The event is set once the lock is let go, and the process ends."""
    code = (
        "import signal\n"
        "from mem_profiler.control.controller import interrupt_event\n"
        "with interrupt_event() as interrupted:\n"
        "    with interrupted._cond:  # as Event.wait holds it\n"
        "        signal.raise_signal(signal.SIGINT)\n"
        "        held = interrupted.is_set()\n"
        "    print(held, interrupted.wait(30), flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "False True\n"), done.stderr


def test_blocks_of_children_that_exit_without_handlers_are_removed(tmp_path):
    """A program that forks short children which end with _exit (no exit handler removes
    their blocks): each new block's process sweeps the blocks of its user's ended
    processes, and the program's own exit the rest."""
    code = (
        "import os\n"
        "for _ in range(20):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "    print(pid, flush=True)\n"
    )
    proc = subprocess.run(
        [MEM_PROFILER, "run", "--idle", "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    children = [int(line) for line in proc.stdout.split()]
    assert len(children) == 20
    assert not [pid for pid in children if os.path.exists(segment_path(pid))]


def test_forked_child_has_its_own_block(server_exe, tmp_path):
    s = Server(server_exe, "fork")
    try:
        parent, child = s.pids
        assert child != parent and os.path.exists(segment_path(child))
        result = capture_window(
            child, 0.3, CaptureSettings(rate=1024, depth=64, prefix=str(tmp_path / "child_"))
        )
        assert result.paths == [str(tmp_path / f"child_{child}.0001.heap")]
        s.check_window(Path(result.paths[0]))
        assert not list(tmp_path.glob(f"child_{parent}.*"))
    finally:
        s.stop()


def test_another_users_block_is_closed_to_third_users(server_exe):
    user = other_user("memprof_other")
    s = Server(server_exe, user=user)
    try:
        block = Path(segment_path(s.pid))
        info = block.stat()
        assert info.st_uid == pwd.getpwnam(user).pw_uid
        assert stat.S_IMODE(info.st_mode) == 0o600
        # Nobody but its owner and root may read it.
        peek = subprocess.run(
            ["runuser", "-u", "nobody", "--", "cat", str(block)], capture_output=True, text=True
        )
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
    finally:
        s.stop()


def test_fifty_processes_listed(tmp_path):
    """Each of 50 preloaded processes listed (how long that takes is `make bench`'s)."""
    env = dict(os.environ, LD_PRELOAD=str(LIBMEMPROF))
    procs = [subprocess.Popen(["sleep", "60"], env=env) for _ in range(50)]
    try:
        for p in procs:
            wait_for(lambda p=p: os.path.exists(segment_path(p.pid)), what="control blocks")
        listing = subprocess.run(
            [MEM_PROFILER, "list"], capture_output=True, text=True, check=True
        ).stdout
        listed = {
            int(line.split()[0]) for line in listing.splitlines()[1:] if line.split()[0].isdigit()
        }
        assert {p.pid for p in procs} <= listed
    finally:
        for p in procs:
            p.kill()
            p.wait()


def refusal(*args: str) -> str:
    proc = subprocess.run([MEM_PROFILER, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    return proc.stderr.removeprefix("mem_profiler: ").strip()


@pytest.mark.alone  # its planted block is one another test's listing would clean
def test_refusals_are_one_sentence(server, tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert refusal("-p", str(gone.pid), "-s", "1") == no_such_process(gone.pid)
    plain = subprocess.Popen(["sleep", "30"])
    try:
        assert refusal("-p", str(plain.pid), "-s", "1") == (
            f"process {plain.pid} does not have the sampler loaded: load it now with "
            f"`mem_profiler -p {plain.pid} --attach`, or start the program with "
            "`mem_profiler run --idle -- CMD` or `LD_PRELOAD=$(mem_profiler lib) CMD`"
        )
        # A block left by an earlier process whose pid is now reused: removed, refused.
        fake = Path(segment_path(plain.pid))
        fake.write_bytes(b"\0" * ffi.sizeof("struct memprof_control"))
        fake.chmod(0o600)
        message = refusal("-p", str(plain.pid), "-s", "1")
        assert message.startswith(
            f"removed a stale control block of an earlier process "
            f"{plain.pid}; process {plain.pid} does not have"
        )
        assert not fake.exists()
    finally:
        plain.kill()
        plain.wait()
    assert refusal("-p", str(server.pid), "-s", "1", "-o", str(tmp_path / "no" / "x_")) == (
        f"output folder {tmp_path / 'no'} does not exist: create it or change -o"
    )
    assert refusal("-c", "64", "list").startswith("-p/-s/-c/-o/-d capture a running process")


def test_stale_blocks_of_dead_processes_are_cleaned(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    fake = Path(segment_path(dead.pid))
    fake.write_bytes(b"\0" * 64)
    subprocess.run([MEM_PROFILER, "list"], check=True, capture_output=True)
    assert not fake.exists()


def test_a_cleaner_leaves_the_block_renamed_over_the_one_it_judged(tmp_path):
    """A process that ran exec renames its new block over the one it made before: a
    listing that judged the old one stale (made by another program) meanwhile must not
    remove the new one (a preloaded `bash -c 'exec server'` lost its block so, once)."""
    path = tmp_path / "mem_profiler.4242"
    path.write_bytes(b"before exec")
    judged = os.stat(path)
    (tmp_path / "made").write_bytes(b"after exec")
    os.rename(tmp_path / "made", path)
    unlink_if_still(str(path), judged)
    assert path.read_bytes() == b"after exec"
    unlink_if_still(str(path), os.stat(path))
    assert not path.exists()


def test_control_block_layout_matches_the_c_header(tmp_path):
    fields = [
        line.split()[-1].rstrip(";").split("[")[0]
        for line in CDEF.split("struct memprof_control {")[1].split("};")[0].splitlines()
        if line.strip()
    ]
    program = tmp_path / "layout.c"
    program.write_text(
        '#include <stddef.h>\n#include <stdio.h>\n#include "memprof_control.h"\nint main(void){\n'
        + "".join(f'printf("{f} %zu\\n", offsetof(struct memprof_control, {f}));\n' for f in fields)
        + 'printf("sizeof %zu\\n", sizeof(struct memprof_control));}\n'
    )
    exe = tmp_path / "layout"
    subprocess.run(["gcc", "-I", str(ROOT / "sampler"), "-o", str(exe), str(program)], check=True)
    c_layout = dict(line.split() for line in subprocess.check_output([exe], text=True).splitlines())
    py_layout = {f: str(ffi.offsetof("struct memprof_control", f)) for f in fields}
    py_layout["sizeof"] = str(ffi.sizeof("struct memprof_control"))
    assert c_layout == py_layout
    assert len(fields) > 20


def test_api_refuses_a_window_without_sampler():
    with pytest.raises(ControlError, match="does not have the sampler loaded"):
        capture_window(
            os.getpid(),
            0.1,
            CaptureSettings(rate=1024, depth=64, prefix=str(Path(sys.prefix) / "x_")),
        )
