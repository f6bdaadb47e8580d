"""Hostile input and faults on the sampler's side (issue 12): files and control blocks
that nothing planted can redirect or squat, what `list` prints from other processes,
failed dumps reported as failures, a log on a full disk, a forked child's log."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.heap_files import edit_heap_header
from support.paths import LIBMEMPROF, MEM_PROFILER
from support.processes import other_user, wait_for
from support.profiling import capture_cli, profile_run, report, run_parser, total
from support.targets import Server

from mem_profiler.control.control_block import block_candidates, segment_path
from mem_profiler.control.controller import list_targets
from mem_profiler.parser.read.heap_file import read_heap

SHM = Path("/dev/shm")


def as_user(user: str, *argv: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", *argv], check=True)


@pytest.fixture
def planted():
    """Paths a test plants in /dev/shm (as another user): removed afterwards."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


# --- files the sampler writes ----------------------------------------------------------


def test_planted_links_never_redirect_a_dump_or_a_log(build_fixture, tmp_path, clean_env):
    """Links at every name the sampler would write, planted once the pid is known:
    the victim is untouched, and the files are ours, regular and complete."""
    exe = build_fixture("endings")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {
        "LD_PRELOAD": str(LIBMEMPROF),
        "MEMPROF_CAPTURE": "1",
        "MEMPROF_RATE": "1",
        "MEMPROF_MODE": "log",
        "MEMPROF_LOG_CAP": "4096",
        "MEMPROF_LOG_FILES": "100",
        "MEMPROF_PREFIX": f"{out}/x_",
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.Popen(
        [str(exe), "wait_stdin", "0"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    stem = f"x_{proc.pid}.0001"
    names = [f"{stem}.heap", f"{stem}.heap.tmp"] + [f"{stem}.{k}.memlog" for k in range(2, 40)]
    for name in names:
        (out / name).symlink_to(victim)
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.close()
    assert proc.wait(timeout=20) == 0
    assert victim.read_text() == "precious\n"
    heap = out / f"{stem}.heap"
    assert heap.is_file() and not heap.is_symlink()
    assert report(heap, exe)["worker_after_main"][1] == 50 * 3000
    logs = [out / f"{stem}.{k}.memlog" for k in range(1, 40)]
    written = [p for p in logs if p.exists() and not p.is_symlink()]
    assert len(written) >= 3 and all(p.stat().st_size >= 48 for p in written)
    assert [p for p in out.glob("*.tmp") if not p.is_symlink()] == []  # none of ours left


def test_a_killed_dumps_temporary_is_removed_by_the_next_dump(build_fixture, tmp_path):
    """A dump killed while its file is complete under its temporary name (fsync stalls
    in a shim) leaves it; the next dump in that folder removes it, and nothing that
    could be a live writer's, a link or another program's file."""
    exe, stall = build_fixture("distinct_stacks"), build_fixture("stall_fsync", shared=True)
    out = tmp_path / "out"
    out.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "MEMPROF_CAPTURE": "1",
        "MEMPROF_RATE": "1",
        "MEMPROF_PREFIX": f"{out}/k_",
    }
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    kept = {
        "link": out / "l_1.0001.heap.abcdefgh.locked.tmp",
        "live": out / "w_1.0001.heap.abcdefgh.locked.tmp",
        "other program's": out / "notes.abcdefgh.locked.tmp",
        "an older sampler's, written unlocked": out / "o_1.0001.heap.abcdefgh.tmp",
        "another user's": out / "u_1.0001.heap.abcdefgh.locked.tmp",
    }
    kept["link"].symlink_to(victim)
    for path in list(kept.values())[1:]:
        path.write_text("kept\n")
    os.chown(kept["another user's"], 65534, 65534)
    live = kept["live"].open()
    fcntl.flock(live, fcntl.LOCK_EX)  # as its writer holds it
    stalled = subprocess.Popen(
        [str(exe), "1000"], env={**env, "LD_PRELOAD": f"{stall} {LIBMEMPROF}"}
    )
    try:
        wait_for(lambda: list(out.glob(f"k_{stalled.pid}.0001.heap.*.locked.tmp")), what="the dump")
    finally:
        stalled.kill()
        stalled.wait()
    proc = subprocess.Popen([str(exe), "1000"], env={**env, "LD_PRELOAD": str(LIBMEMPROF)})
    assert proc.wait(timeout=60) == 0
    live.close()
    heap = out / f"k_{proc.pid}.0001.heap"  # whole: every block of the run in it
    assert total(heap, exe, "alloc_space") == total(heap, exe) == 1000 * 64
    assert sorted(out.iterdir()) == sorted([heap, *kept.values()])
    assert victim.read_text() == "precious\n"


# --- control blocks -------------------------------------------------------------------


def start_after_line(exe: Path) -> tuple[subprocess.Popen, int]:
    """exe with the sampler, exec'd by a shell only once a line arrives on stdin: its
    pid is known before the sampler runs."""
    script = f'read line; exec env LD_PRELOAD={LIBMEMPROF} "$0"'
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MEMPROF_") and k != "LD_PRELOAD"
    }
    proc = subprocess.Popen(
        ["/bin/sh", "-c", script, str(exe)],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    return proc, proc.pid


def test_squatted_block_names_neither_stop_a_capture_nor_mislead(server_exe, tmp_path, planted):
    user = other_user("memprof_other")
    proc, pid = start_after_line(server_exe)
    try:
        planted += [SHM / f"mem_profiler.{pid}", SHM / f".mem_profiler.{pid}.new"]
        as_user(user, "mkdir", str(planted[0]))
        as_user(user, "touch", str(planted[1]))
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["ready", str(pid)]
        wait_for(lambda: len(block_candidates(pid)) == 2, what="a block under another name")
        (block,) = [p for p in block_candidates(pid) if not Path(p).is_dir()]
        assert stat.S_ISREG(os.lstat(block).st_mode) and os.lstat(block).st_uid == 0
        capture = capture_cli(pid, "-s", "0.3", "-o", tmp_path / "c_")
        assert capture.returncode == 0, capture.stderr
        assert (tmp_path / f"c_{pid}.0001.heap").is_file()
        (target,) = [t for t in list_targets() if t.pid == pid]
        assert (target.user, target.state) == ("root", "idle")
    finally:
        proc.kill()
        proc.wait()
        for path in block_candidates(pid):
            # another sampled process may remove the killed one's stale block first
            with contextlib.suppress(FileNotFoundError):
                if not Path(path).is_dir():
                    os.unlink(path)


def test_list_survives_what_others_leave_in_dev_shm(server, planted):
    user = other_user("memprof_other")
    planted += [
        SHM / "mem_profiler.999999",
        SHM / "mem_profiler.999998",
        SHM / "mem_profiler.1",
        SHM / f"mem_profiler.{server.pid}.spoof",
    ]
    as_user(user, "ln", "-s", "/nonexistent", str(planted[0]))
    as_user(user, "ln", "-s", "/etc/passwd", str(planted[1]))
    as_user(user, "mkdir", str(planted[2]))
    as_user(user, "cp", "/dev/null", str(planted[3]))
    proc = subprocess.run([MEM_PROFILER, "list"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == ""
    rows = proc.stdout.splitlines()[1:]
    pids = [int(row.split()[0]) for row in rows if row.split()[0].isdigit()]
    assert pids.count(server.pid) == 1 and not {1, 999998, 999999} & set(pids)
    (row,) = [r for r in rows if r.split()[0] == str(server.pid)]
    assert row.split()[1:3] == ["root", "idle"]


@pytest.mark.alone  # its planted block is one another test's listing would clean
def test_list_survives_a_block_removed_while_it_looks(server, monkeypatch, tmp_path):
    """A block whose process ends between the listing of /dev/shm and the look at it."""
    doomed = subprocess.Popen(["sleep", "30"])
    fake = SHM / f"mem_profiler.{doomed.pid}"
    fake.write_bytes(b"\0" * 64)
    real_scandir = os.scandir

    def scandir_then_remove(path):  # the listing of list_targets only
        monkeypatch.setattr(os, "scandir", real_scandir)
        with real_scandir(path) as entries:
            listed = list(entries)
        fake.unlink()
        return iter(listed)

    monkeypatch.setattr(os, "scandir", scandir_then_remove)
    try:
        pids = [t.pid for t in list_targets()]
    finally:
        doomed.kill()
        doomed.wait()
    assert server.pid in pids and doomed.pid not in pids


def test_list_escapes_names_as_ps_does(server_exe, clean_env):
    evil = "evil\n 1 root idle /sbin/init \x1b]0;PWNED\x07"
    proc = subprocess.Popen(
        ["/bin/bash", "-c", 'exec -a "$0" "$1"', evil, str(server_exe)],
        env={"LD_PRELOAD": str(LIBMEMPROF), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline().split()[1])
        wait_for(lambda: block_candidates(pid), what="a control block")
        out = subprocess.run(
            [MEM_PROFILER, "list"], capture_output=True, text=True, timeout=30
        ).stdout
        (row,) = [r for r in out.splitlines() if r.split()[0] == str(pid)]
        assert row.endswith("evil? 1 root idle /sbin/init ?]0;PWNED?")
        assert "\x1b" not in out and " 1  root" not in out.replace(row, "")
    finally:
        proc.kill()
        proc.wait()
        Path(segment_path(pid)).unlink(missing_ok=True)


def test_a_live_process_of_another_version_keeps_its_block(server):
    """A block whose ABI this mem_profiler does not speak, of the live process it names:
    refused in one sentence, listed, and never removed."""
    (path,) = block_candidates(server.pid)
    with open(path, "r+b") as f:
        abi = f.read(12)[8:12]
        f.seek(8)
        f.write((999).to_bytes(4, "little"))
    try:
        proc = capture_cli(server.pid, "-s", "0.2")
        assert proc.returncode == 1 and proc.stderr == (
            f"mem_profiler: process {server.pid} runs another version of the sampler (control"
            f" block ABI 999, this mem_profiler speaks {int.from_bytes(abi, 'little')}):"
            " capture it with that version's mem_profiler\n"
        )
        (target,) = [t for t in list_targets() if t.pid == server.pid]
        assert target.state == "other ABI" and os.path.exists(path)
    finally:
        with open(path, "r+b") as f:
            f.seek(8)
            f.write(abi)
    assert [t.state for t in list_targets() if t.pid == server.pid] == ["idle"]


# --- failed dumps ---------------------------------------------------------------------


@contextlib.contextmanager
def small_file_system(folder: Path, size: str) -> Iterator[Path]:
    """`folder` as the mount point of a tmpfs of `size`, for the time of the block."""
    folder.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
        ).returncode
        != 0
    ):
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def full_folder(tmp_path):
    """A folder on a file system with no room left (a small tmpfs, filled)."""
    with small_file_system(tmp_path / "full", "64k") as folder:
        with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
            f.write(b"\0" * (1 << 20))
        yield folder


@pytest.mark.parametrize("where", ["full", "long name", "proc"])
def test_a_failed_dump_is_a_failure_with_its_reason(server, full_folder, where):
    prefix, reason = {
        "full": (f"{full_folder}/x_", "No space left on device"),
        "long name": (f"{full_folder.parent}/{'n' * 250}_", "File name too long"),
        "proc": ("/proc/x_", None),
    }[where]
    proc = capture_cli(server.pid, "-s", "0.3", "-o", prefix)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(
        f"mem_profiler: process {server.pid} could not write {prefix}{server.pid}.0001.heap: "
    )
    assert proc.stderr.count("\n") == 1 and (reason is None or proc.stderr.endswith(reason + "\n"))
    (target,) = [t for t in list_targets() if t.pid == server.pid]
    assert (target.state, target.last_dump) == ("idle", "")


def test_a_folder_name_that_is_not_utf8(server, tmp_path):
    folder = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9"))
    os.mkdir(folder)
    proc = subprocess.run(
        [MEM_PROFILER, "-p", str(server.pid), "-s", "0.2", "-o", f"{folder}/x_"],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    heap = os.path.join(os.fsencode(folder), f"x_{server.pid}.0001.heap".encode())
    assert os.path.isfile(heap)


def test_a_program_whose_path_is_not_utf8_is_captured(server_exe, tmp_path):
    folder = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    os.mkdir(folder)
    exe = os.fsdecode(os.path.join(folder, b"server"))
    shutil.copy2(server_exe, exe)
    s = Server(Path(exe))
    try:
        proc = capture_cli(s.pid, "-s", "0.2", "-o", f"{tmp_path}/u_")
    finally:
        s.stop()
    assert proc.returncode == 0, proc.stderr
    assert read_heap(tmp_path / f"u_{s.pid}.0001.heap").exe == exe


def test_a_prefix_with_glob_characters_names_its_own_files(build_fixture, tmp_path):
    """A prefix is a name, not a pattern: `a[1]_` does not stand for `a1_`."""
    exe = build_fixture("mixed_sizes")
    proc, _ = profile_run([exe, "10", "1"], tmp_path / "a[1]_", 1, timeout=30)
    assert proc.returncode == 0, proc.stderr
    (heap,) = tmp_path.glob("a?1?_*.heap")
    # What the prefix would match as a pattern: another capture's device heap.
    decoy = tmp_path / heap.name.replace("a[1]_", "a1_").replace(".heap", ".cuda.heap")
    edit_heap_header(heap, lambda text: text.replace("# heap: host", "# heap: cuda"), decoy)
    parse = run_parser("-p", exe, "-f", str(heap).removesuffix(".heap"), "-t", timeout=30)
    assert parse.stdout.startswith("Total: ") and "mixed_site" in parse.stdout


def test_run_into_a_full_disk_says_why_and_fails(build_fixture, full_folder):
    exe = build_fixture("endings")
    proc, _ = profile_run([exe, "getattr"], full_folder / "x_", 1024, timeout=30)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"mem_profiler: could not write {full_folder}/x_")
    assert line.endswith(".0001.heap: No space left on device")


def test_a_log_on_a_disk_that_fills_stays_readable(build_fixture, tmp_path):
    exe = build_fixture("mixed_sizes")
    with small_file_system(tmp_path / "small", "256k") as folder:
        proc, _ = profile_run(
            [exe, "20000", "0"], folder / "l_", 1, "--mode", "log", "--log-cap", "65536", timeout=60
        )
        assert proc.returncode == 1, proc.stderr
        logs = sorted(folder.glob("l_*.memlog"))
        assert logs and all(p.stat().st_size >= 48 for p in logs), [
            (p.name, p.stat().st_size) for p in logs
        ]
        assert [p.name.split(".")[-2] for p in logs] == [str(k) for k in range(1, len(logs) + 1)]
        timeline = run_parser("-p", exe, "-f", logs[-1], "--leaks", timeout=60)
        assert "Traceback" not in timeline.stderr


def test_a_log_that_stopped_early_is_said_so(build_fixture, tmp_path):
    """The .heap file's `# log_stopped:` line (written when a log write failed) becomes a
    warning with where the log ends."""
    exe = build_fixture("mixed_sizes")
    proc, _ = profile_run([exe, "2000", "0"], tmp_path / "s_", 1, "--mode", "log", timeout=60)
    (heap,) = tmp_path.glob("s_*.heap")
    edit_heap_header(
        heap,
        lambda text: text.replace("# log: ", "# log_stopped: No space left on device\n# log: "),
    )
    leaks = run_parser("-p", exe, "-f", heap, "--leaks", timeout=60)
    (warning,) = [line for line in leaks.stderr.splitlines() if "stopped early" in line]
    assert warning.startswith(
        "mem_parser: warning: the event log stopped early (No space left on device): events after "
    )
    assert warning.endswith(" ms of the window are missing."), proc.stderr


# --- messages -------------------------------------------------------------------------


def test_a_killed_log_mode_target_says_where_its_log_went(server_exe, tmp_path):
    """Where this window's log went, not the files of the windows before it."""
    s = Server(server_exe)
    earlier = capture_cli(s.pid, "-s", "0.2", "-o", tmp_path / "k_")
    assert earlier.returncode == 0 and (tmp_path / f"k_{s.pid}.0001.heap").is_file()
    controller = subprocess.Popen(
        [MEM_PROFILER, "-p", str(s.pid), "-s", "30", "--mode", "log", "-o", str(tmp_path / "k_")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: list(tmp_path.glob("k_*.memlog")), what="the log")
        time.sleep(0.3)
    finally:
        s.stop()
    out, err = controller.communicate(timeout=10)
    assert controller.returncode == 1
    logs = sorted(str(p) for p in tmp_path.glob(f"k_{s.pid}.0002.*.memlog"))
    assert logs
    assert err.strip() == (
        f"mem_profiler: process {s.pid} ended during the capture; it left " + ", ".join(logs)
    )


def test_attach_to_a_sampler_without_control_block_says_why(server_exe, clean_env):
    proc = subprocess.Popen(
        [str(server_exe)],
        stdout=subprocess.PIPE,
        text=True,
        env={"LD_PRELOAD": str(LIBMEMPROF), "MEMPROF_CONTROL": "0", "PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline().split()[1])
        out = subprocess.run(
            [MEM_PROFILER, "-p", str(pid), "--attach", "-s", "0.2"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 1
        assert out.stderr == (
            f"mem_profiler: process {pid} has the sampler loaded already but made no control "
            "block (was it started with MEMPROF_CONTROL=0?): it cannot be captured from "
            "outside; start it again without MEMPROF_CONTROL=0\n"
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_a_forked_childs_log_is_its_own(build_fixture, tmp_path):
    exe = build_fixture("lifecycle")
    plugin = build_fixture("plugin", shared=True)
    proc = subprocess.run(
        [
            MEM_PROFILER,
            "run",
            "-c",
            "1",
            "--mode",
            "log",
            "--follow-fork",
            "-o",
            str(tmp_path / "f_"),
            "--",
            str(exe),
            str(plugin),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    heaps = sorted(tmp_path.glob("f_*.heap"))
    assert len(heaps) == 2
    for heap in heaps:
        pid = read_heap(heap).pid
        assert pid is not None, heap
        base = str(tmp_path / f"f_{pid}.0001")
        assert read_heap(heap).meta["log"] == base
        assert Path(base + ".1.memlog").is_file()
    child = max(heaps, key=lambda h: read_heap(h).pid or 0)  # every pid read above
    leaks = run_parser("-p", exe, "-f", child, "--leaks", timeout=60)
    assert "child_work" in leaks.stdout
    assert "parent_work" not in leaks.stdout


def test_a_folder_swapped_for_a_link_mid_window_redirects_nothing(tmp_path_factory, clean_env):
    """Root runs a program with -o nobody/prof/svc_; mid-window nobody swaps `prof` for
    a link to a root-only folder. The program, which writes its profile itself, writes
    only into the folder the window opened in: it finds another there, and the run fails
    saying why; nothing lands in the root-only folder, nor anywhere else."""
    top = tmp_path_factory.mktemp("swap")
    top.chmod(0o755)
    theirs = top / "nobody"
    prof = theirs / "prof"
    prof.mkdir(parents=True)
    for folder in (theirs, prof):
        os.chown(folder, 65534, 65534)
    root_only = top / "root_only"
    root_only.mkdir(mode=0o700)
    run = subprocess.Popen(
        [MEM_PROFILER, "run", "-o", f"{prof}/svc_", "--", "cat"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pid = wait_for(lambda: next((t.pid for t in list_targets() if t.cmdline == "cat"), None))
    wait_for(lambda: Path(segment_path(pid)).exists(), what="the window set up")
    prof.rename(theirs / "prof.old")  # nobody's moves, in nobody's folder
    prof.symlink_to(root_only)
    os.chown(prof, 65534, 65534, follow_symlinks=False)
    _, err = run.communicate("", timeout=60)
    assert run.returncode == 1, err
    assert list(root_only.iterdir()) == [] and list((theirs / "prof.old").iterdir()) == []
    assert (
        f"mem_profiler: could not write {prof}/svc_{pid}.0001.heap: its folder was replaced"
        " since the window opened (a link or another folder in its place)\n"
    ) in err
