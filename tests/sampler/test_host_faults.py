"""The host program runs as it would without the sampler when the machine is against
it (issue 24): /dev/shm full, a small RLIMIT_FSIZE, a change of user, few descriptors.
The sampler may then capture nothing, and says so in one sentence."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest
from support.paths import LIBMEMPROF, MEM_PROFILER
from support.processes import other_user
from support.profiling import capture_cli, report
from support.targets import Server

from mem_profiler.control.control_block import block_candidates, block_pid, segment_path
from mem_profiler.control.controller import list_targets
from mem_profiler.parser.read.heap_file import read_heap

NO_BLOCK = "mem_profiler: no control block ({}): this process cannot be captured from outside\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts and limits need root")


def host_env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", **extra}


def preload_env(**extra: str) -> dict[str, str]:
    return host_env(LD_PRELOAD=str(LIBMEMPROF), **extra)


# --- /dev/shm full ------------------------------------------------------------------

FULL_SHM = """
set -e
mount -t tmpfs -o size=64k,mode=1777 memprof_full /dev/shm
head -c 1048576 /dev/zero > /dev/shm/fill 2>/dev/null || true
set +e
"$@"
rc=$?
ls -A /dev/shm > "$SHM_LISTING"
umount /dev/shm
exit $rc
"""


def run_with_full_shm(argv: list[str], env: dict[str, str], listing: Path):
    """argv with /dev/shm a full 64 KiB tmpfs, mounted in a mount namespace of its own
    (gone with it); `listing` gets what /dev/shm held after."""
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "env",
            f"SHM_LISTING={listing}",
            "/bin/sh",
            "-c",
            FULL_SHM,
            "sh",
            "env",
            "-i",
            *[f"{k}={v}" for k, v in env.items()],
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("capture", [False, True], ids=["idle", "capturing"])
def test_full_dev_shm_neither_kills_the_host_nor_leaves_a_file(build_fixture, tmp_path, capture):
    exe = build_fixture("host_exit")
    listing = tmp_path / "shm"
    plain = run_with_full_shm([str(exe)], host_env(), listing)
    assert plain.returncode == 7 and plain.stderr == ""
    assert listing.read_text().split() == ["fill"]
    extra = {"MEMPROF_CAPTURE": "1", "MEMPROF_PREFIX": f"{tmp_path}/h_"} if capture else {}
    proc = run_with_full_shm([str(exe)], preload_env(**extra), listing)
    assert (proc.returncode, proc.stdout) == (plain.returncode, plain.stdout)
    assert proc.stderr == NO_BLOCK.format("No space left on device")
    assert listing.read_text().split() == ["fill"]  # no .mem_profiler.*.tmp left
    assert len(list(tmp_path.glob("h_*.heap"))) == (1 if capture else 0)


# --- a small RLIMIT_FSIZE -----------------------------------------------------------


def run_with_file_limit(argv: list[str], env: dict[str, str], limit: int):
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=set_limit,
    )
    out, err = proc.communicate(timeout=60)
    return proc.pid, subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_a_file_limit_below_the_block_leaves_an_idle_host_as_it_was(build_fixture):
    exe = build_fixture("host_exit")
    _, plain = run_with_file_limit([str(exe)], host_env(), 1024)
    _, proc = run_with_file_limit([str(exe)], preload_env(), 1024)
    assert (proc.returncode, proc.stdout) == (plain.returncode, plain.stdout) == (7, plain.stdout)
    assert proc.stderr == NO_BLOCK.format("File too large")


def test_a_file_limit_below_the_dump_keeps_the_hosts_status_and_output(build_fixture, tmp_path):
    """The block fits (9.5 kB) and the exit dump does not (20 kB, most of it the memory
    map of 12,000 mappings): the dump fails in one sentence, nothing is left under its
    name or a temporary one, and the program's buffered stdout and exit status are its
    own."""
    exe = build_fixture("host_exit")
    argv = [str(exe), "200", "12000"]
    _, plain = run_with_file_limit(argv, host_env(), 16384)
    env = preload_env(MEMPROF_CAPTURE="1", MEMPROF_RATE="1", MEMPROF_PREFIX=f"{tmp_path}/h_")
    pid, proc = run_with_file_limit(argv, env, 16384)
    assert (proc.returncode, proc.stdout) == (plain.returncode, plain.stdout) == (7, plain.stdout)
    assert (
        proc.stderr
        == f"mem_profiler: could not write {tmp_path}/h_{pid}.0001.heap: File too large\n"
    )
    assert list(tmp_path.iterdir()) == []
    run = subprocess.run(
        [MEM_PROFILER, "run", "-c", "1", "-o", f"{tmp_path}/r_", "--", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384)),
    )
    assert (run.returncode, run.stdout) == (7, plain.stdout)
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"mem_profiler: could not write {tmp_path}/r_") and line.endswith(
        ".0001.heap: File too large"
    )
    assert list(tmp_path.iterdir()) == []


# --- an address-space limit --------------------------------------------------------

AS_LIMIT = 200 << 20  # room for mem_profiler and a small program; not for 512 MiB of tables


def test_an_address_space_limit_below_the_tables_is_told_by_run(build_fixture, tmp_path):
    """`run` under `ulimit -v`: the window cannot open, and run says why (not "killed or
    _exit"), passing the program's own status through; with the tables' budget lowered
    as it advises, the same limit lets the capture through."""
    exe = build_fixture("host_exit")
    argv = [str(exe), "200", "4000"]
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=60)

    def run(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [MEM_PROFILER, "run", "-c", "1", "-o", f"{tmp_path}/r_", *options, "--", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT)),
        )

    refused = run()
    assert (refused.returncode, refused.stdout) == (plain.returncode, plain.stdout) == (7, ANY)
    assert refused.stderr == (
        "mem_profiler: could not start capturing: Cannot allocate memory (the sampler's "
        "tables do not fit under the process's memory limit: raise `ulimit -v`, or lower "
        "--stack-memory)\n"
    )
    assert list(tmp_path.iterdir()) == []
    captured = run("--stack-memory", "16")
    assert (captured.returncode, captured.stdout) == (plain.returncode, plain.stdout)
    (heap,) = tmp_path.iterdir()
    assert captured.stderr == f"mem_profiler: wrote {heap}\n"


# --- a change of user ---------------------------------------------------------------


def test_setpriv_under_the_sampler_exits_as_without_it():
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/echo", "hi"]
    plain = subprocess.run(argv, env=host_env(), capture_output=True, text=True, timeout=30)
    proc = subprocess.run(argv, env=preload_env(), capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (plain.returncode, plain.stdout, "")
    assert plain.returncode == 0
    true = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/true"]
    assert subprocess.run(true, env=preload_env(), timeout=30).returncode == 0


@contextlib.contextmanager
def dropping_privileges(build_fixture, mode: str) -> Iterator[subprocess.Popen]:
    """The drop_privileges fixture in `mode`, preloaded; killed if still running after,
    and the control blocks its pid may have left removed."""
    proc = subprocess.Popen(
        [str(build_fixture("drop_privileges")), mode],
        env=preload_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        for path in block_candidates(proc.pid):
            Path(path).unlink(missing_ok=True)


def test_a_program_that_drops_root_keeps_running_and_its_control_thread(build_fixture):
    """setpriv's drop in a program that goes on: the control thread is made again by
    the program's thread after each change, so it holds the capabilities that thread
    raised again (an older one would hold none)."""
    with dropping_privileges(build_fixture, "keepcaps") as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["ready", str(proc.pid)]
        threads = {
            Path(task, "comm").read_text().strip(): credentials(Path(task, "status"))
            for task in Path(f"/proc/{proc.pid}/task").iterdir()
        }
        assert set(threads) == {"drop_privileges", "memprof-ctl"}
        assert threads["memprof-ctl"] == threads["drop_privileges"]
        assert threads["memprof-ctl"]["Uid"] == "65534\t65534\t65534\t65534"
        assert int(threads["memprof-ctl"]["CapEff"], 16) != 0
        assert proc.stdin is not None
        proc.stdin.write("done\n")
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0


def test_a_vfork_child_changing_user_leaves_its_parent_capturable(build_fixture, tmp_path):
    """A vfork child shares its parent's memory, the control thread's state included:
    its set*id call must neither end nor replace the parent's thread."""
    with dropping_privileges(build_fixture, "vfork") as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "child 0\n"
        assert proc.stdout.readline().split() == ["ready", str(proc.pid)]
        capture = capture_cli(proc.pid, "-s", "0.2", "-o", tmp_path / "c_")
        assert capture.returncode == 0, capture.stderr
        assert (tmp_path / f"c_{proc.pid}.0001.heap").is_file()
        assert proc.stdin is not None
        proc.stdin.write("done\n")
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0


def credentials(status: Path) -> dict[str, str]:
    keys = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    lines = (line.split(":", 1) for line in status.read_text().splitlines())
    return {k: v.strip() for k, v in lines if k in keys}


# --- few descriptors ----------------------------------------------------------------


def test_a_dump_at_the_descriptor_limit_holds_the_command_line_and_map(build_fixture, tmp_path):
    """RLIMIT_NOFILE 4 leaves one descriptor beside stdin, stdout and stderr: the
    command line and the memory map are read with it before the file is made."""
    exe = build_fixture("host_exit")

    def four_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4, 4))

    def run(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(exe), "20"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=four_files,
        )

    plain = run(host_env())
    env = preload_env(MEMPROF_CAPTURE="1", MEMPROF_RATE="1", MEMPROF_PREFIX=f"{tmp_path}/h_")
    proc = run(env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, plain.stdout, plain.stderr)
    (heap,) = tmp_path.glob("h_*.heap")
    profile = read_heap(heap)
    assert profile.cmdline == f"{exe} 20"
    assert any(m.path == str(exe) for m in profile.mappings)
    assert report(heap, exe)["host_work"][1] == 400 * 1000


# --- secure-execution mode ----------------------------------------------------------

SYSTEM_PRELOAD = """
set -e
mount -t overlay memprof_etc -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
echo "$2" > /etc/ld.so.preload
shift 2
set +e
for program in "$@"; do
    prefix="$(dirname "$program")/out/$(basename "$program")_"
    runuser -u memprof_other -- env MEMPROF_CAPTURE=1 MEMPROF_PREFIX="$prefix" "$program"
done
umount /etc
"""


@pytest.mark.skipif(
    "overlay" not in Path("/proc/filesystems").read_text(), reason="no overlay file system"
)
def test_a_setuid_program_takes_no_setting_from_its_callers_environment(build_fixture):
    """A system-wide preload (/etc/ld.so.preload, over an overlay of /etc in a mount
    namespace of the test's own): a user's MEMPROF_* make the user's own program
    capture, and a setuid-root one ignore them, writing no root file where they point."""
    other_user("memprof_other")
    folder = Path(tempfile.mkdtemp(prefix="memprof-secure-"))
    shm_before = set(os.listdir("/dev/shm"))
    try:
        folder.chmod(0o755)
        for sub in ("upper", "work", "out"):
            (folder / sub).mkdir()
        (folder / "out").chmod(0o1777)
        plain, setuid = folder / "plain", folder / "setuid"
        for exe in (plain, setuid):
            shutil.copy(build_fixture("sampler_probe"), exe)
        plain.chmod(0o755)
        setuid.chmod(0o4755)
        proc = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                SYSTEM_PRELOAD,
                "sh",
                str(folder),
                str(LIBMEMPROF),
                str(plain),
                str(setuid),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.stdout.splitlines() == [
            "sampler loaded, capturing 1",
            "sampler loaded, capturing 0",
        ], proc.stderr
        written = [(p.name.split("_")[0], p.stat().st_uid) for p in (folder / "out").iterdir()]
        assert written == [("plain", pwd.getpwnam("memprof_other").pw_uid)]
    finally:
        shutil.rmtree(folder)
        remove_ended_blocks(set(os.listdir("/dev/shm")) - shm_before)


def remove_ended_blocks(names: set[str]) -> None:
    """Blocks of the test's processes, all ended: an exec after a change of user leaves
    one under another user's name, which no later process of ours removes."""
    for name in names:
        pid = block_pid(name)
        if pid is not None and not Path(f"/proc/{pid}").exists():
            Path("/dev/shm", name).unlink(missing_ok=True)


# --- the control block's mode -------------------------------------------------------


def test_the_control_block_is_0600_from_the_instant_it_appears(build_fixture):
    """Under umask 0 a file gets the mode open() asks for: the block's temporary file
    must never be open to another user, not even before a chmod."""
    shim = build_fixture("open_modes", shared=True)
    exe = build_fixture("host_exit")
    env = host_env(LD_PRELOAD=f"{shim} {LIBMEMPROF}", OPEN_MODES_PREFIX="/dev/shm/.mem_profiler")
    proc = subprocess.run(
        [str(exe), "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0),
    )
    assert (proc.returncode, proc.stderr) == (7, "made 600\n")


# --- a PID namespace sharing /dev/shm -------------------------------------------------

IN_PID_NAMESPACE = """
set -e
LD_PRELOAD="$1" /bin/true
echo $(($2 - 1)) > /proc/sys/kernel/ns_last_pid
LD_PRELOAD="$1" /bin/true &
echo "namesake $!"
wait $!
"$3" list > /dev/null
"""


def _pid_in(entry: str) -> int:
    digits = re.search(r"\d+", entry)
    return int(digits[0]) if digits else 0


def _of_a_live_process(entry: str) -> bool:
    return _pid_in(entry) > 0 and Path(f"/proc/{_pid_in(entry)}").exists()


def _of_a_sampled_process(entry: str) -> bool:
    """Another test's, made meanwhile: a live process with the sampler loaded (no process
    of the namespace outlives it; a namespace's small pids are the host's kernel threads)."""
    try:
        return str(LIBMEMPROF) in Path(f"/proc/{_pid_in(entry)}/maps").read_text()
    except OSError:
        return False


@pytest.mark.alone  # it compares all of /dev/shm before and after
def test_processes_in_a_pid_namespace_leave_the_hosts_blocks(server, tmp_path):
    """Inside `unshare -fp` the host's pids are gone: neither a sampler ending there,
    nor its namesake with the server's pid as its own, nor `list` may remove the
    server's block (or take its name)."""
    block = os.stat(segment_path(server.pid))
    shm_before = set(os.listdir("/dev/shm"))
    proc = subprocess.run(
        ["unshare", "-fp", "--mount-proc", "/bin/sh", "-c", IN_PID_NAMESPACE, "sh"]
        + [str(LIBMEMPROF), str(server.pid), MEM_PROFILER],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"namesake {server.pid}\n", "")
    shm_after = set(os.listdir("/dev/shm"))
    assert os.stat(segment_path(server.pid)).st_ino == block.st_ino
    assert [e for e in shm_after - shm_before if not _of_a_sampled_process(e)] == []
    assert [e for e in shm_before - shm_after if _of_a_live_process(e)] == []
    capture = capture_cli(server.pid, "-s", "0.2", "-o", tmp_path / "c_")
    assert capture.returncode == 0, capture.stderr
    assert (tmp_path / f"c_{server.pid}.0001.heap").is_file()


# --- a jail: chroot, a mount namespace of its own -------------------------------------


@pytest.mark.parametrize("mode", ["chroot", "mount"])
def test_a_window_is_refused_where_the_process_sees_other_files(build_fixture, tmp_path, mode):
    """unshare(CLONE_NEWNS) moves the calling thread alone into the new namespace and its
    chroot moves that thread's root alone: the control thread, made before, would write
    the window's file where the jailed process cannot see it (into the host's folder)."""
    jail = tmp_path / "jail"
    jail.mkdir()
    proc = subprocess.Popen(
        [str(build_fixture("jail")), mode, str(jail)],
        env=preload_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"ready {proc.pid}\n"
        # where the jailed process asking for it would mean something else
        prefix = (tmp_path if mode == "chroot" else jail) / "c_"
        capture = capture_cli(proc.pid, "-s", "0.2", "-o", prefix)
        assert (capture.returncode, capture.stdout, capture.stderr) == (
            1,
            "",
            f"mem_profiler: process {proc.pid} refused the request: it changed its root or"
            " mount namespace since the sampler started (chroot, unshare): its files would be"
            " written outside them\n",
        )
        assert list(tmp_path.rglob("*")) == [jail]
        assert proc.stdin is not None
        proc.stdin.write("done\n")
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
        for path in block_candidates(proc.pid):  # a jail without /dev/shm cannot remove it
            Path(path).unlink(missing_ok=True)


# --- names squatting in /dev/shm ------------------------------------------------------

SQUATTERS = 50_000  # names another user put in /dev/shm


def test_names_squatting_dev_shm_cost_a_process_a_bounded_look(tmp_path):
    """The sampler looks through /dev/shm for what dead processes left, at start and at
    exit: tens of thousands of names there cost each process a bounded number of
    directory reads (strace counts them), not one pass over them all."""
    squat = tempfile.mkdtemp(prefix="squat-", dir="/dev/shm")
    shutil.rmtree(squat)
    names = [f"/dev/shm/memprof-squat-{os.getpid()}-{i}" for i in range(SQUATTERS)]
    try:
        for name in names:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        trace = tmp_path / "trace"
        proc = subprocess.run(
            ["strace", "-f", "-c", "-e", "trace=getdents64", "-o", str(trace), "/bin/true"],
            env=preload_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (proc.returncode, proc.stderr) == (0, "")
        rows = [line.split() for line in trace.read_text().splitlines()]
        (calls,) = [int(row[3]) for row in rows if row[-1] == "getdents64"]
        entries = len(os.listdir("/dev/shm"))
        # each read returns 85 of these names; two looks at 8192 entries at most each,
        # where a look through all would take some 600 reads
        assert entries >= SQUATTERS and calls <= 2 * (8192 // 80 + 2), calls
    finally:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def test_names_squatting_dev_shm_cost_list_one_pass(server_exe, monkeypatch):
    """`list` reads /dev/shm once, however many processes it finds there, and a name
    another user put beside a live process's block is never taken for it."""
    squatter = pwd.getpwnam(other_user("memprof_squatter"))
    servers = [Server(server_exe) for _ in range(2)]
    dead = max(int(e.name) for e in os.scandir("/proc") if e.name.isdigit()) + 1000
    names = [f"/dev/shm/mem_profiler.{s.pid}.squat{i}" for s in servers for i in range(500)]
    names += [f"/dev/shm/mem_profiler.{dead + i}" for i in range(5000)]
    scans = []
    real_scandir = os.scandir

    def counted(path="."):
        scans.append(os.fspath(path))
        return real_scandir(path)

    try:
        for name in names:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.fchown(fd, squatter.pw_uid, squatter.pw_gid)
            os.close(fd)
        monkeypatch.setattr(os, "scandir", counted)
        listed = {t.pid: t.state for t in list_targets(clean=False)}
        monkeypatch.undo()
        assert scans.count("/dev/shm") == 1, scans
        assert all(listed.get(s.pid) == "idle" for s in servers), listed
        assert not any(dead <= pid < dead + 5000 for pid in listed)
    finally:
        for s in servers:
            s.stop()
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
