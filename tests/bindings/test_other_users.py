"""Processes of other users and processes that change user (ARCHITECTURE.md, "The
control block"): root captures, dumps, views and detaches any of them, preloaded or
attached; a worker that gave up root for its user is captured by that user and by root;
a third user is refused with the reason. Real preloaded targets, real users, the real
command line (run as the other users by CliAsUser)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.paths import MEM_PROFILER
from support.processes import other_user, wait_for
from support.profiling import CliAsUser, capture_cli, report, wait_for_window, window_to_interrupt
from support.targets import Server

from mem_profiler.control import procfs
from mem_profiler.control.control_block import block_candidates
from mem_profiler.parser.read.heap_file import read_heap

OWNER, THIRD = "memprof_other", "memprof_third"
BATCH, BATCH_BYTES = 1000, 200  # tests/fixtures/worker_pool.c


def has_block_of(pid: int, uid: int) -> bool:
    """Whether one of pid's blocks is uid's; a block retired (its process changed user)
    between the listing and the stat is not."""
    for path in block_candidates(pid):
        try:
            if os.stat(path).st_uid == uid:
                return True
        except FileNotFoundError:
            pass
    return False


@pytest.fixture
def shared(tmp_path) -> Iterator[Path]:
    """A folder every user can write in (the targets write their profiles themselves)."""
    folder = Path(tempfile.mkdtemp(prefix="memprof-users-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder)


def cli(*args: str | Path | int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MEM_PROFILER, *map(str, args)], capture_output=True, text=True, timeout=60
    )


def listed(pid: int) -> list[str]:
    """The fields of pid's line in `mem_profiler list` (as root): pid, user, state..."""
    listing = cli("list").stdout.splitlines()
    return next((line.split() for line in listing if line.split()[:1] == [str(pid)]), [])


def refused_as(user: str, pid: int, owner: str) -> None:
    proc = CliAsUser(user, "-p", pid, "-s", "0.2", "-o", "/tmp/never_").result()
    assert (proc.returncode, proc.stderr) == (
        1,
        f"mem_profiler: process {pid} belongs to {owner}: capturing another user's "
        "process needs root (CAP_SYS_PTRACE)\n",
    )


def test_root_captures_views_and_detaches_another_users_process(server_exe, shared):
    owner = other_user(OWNER)
    s = Server(server_exe, user=owner)
    try:
        assert listed(s.pid)[:3] == [str(s.pid), owner, "idle"]
        capture = capture_cli(s.pid, "-s", "0.5", "-o", shared / "w_")
        assert capture.returncode == 0, capture.stderr
        heap = shared / f"w_{s.pid}.0001.heap"
        assert capture.stdout == f"succeeded in collecting memory data!  {heap}\n"
        assert heap.stat().st_uid == pwd.getpwnam(owner).pw_uid  # the target wrote it
        s.check_window(heap)
        top = cli("top", "-p", s.pid, "-n", "1")
        assert top.returncode == 0, top.stderr
        assert "site_pages" in top.stdout
        detach = cli("detach", "-p", s.pid)
        assert detach.returncode == 0, detach.stderr
        assert detach.stdout.startswith(f"detached from process {s.pid}:")
        refused_as(other_user(THIRD), s.pid, owner)
        # The target writes the window's files: a folder only root may enter is refused
        # before the window opens, not after it.
        private = Path(tempfile.mkdtemp())
        try:
            proc = capture_cli(s.pid, "-s", "0.2", "-o", private / "p_")
        finally:
            private.rmdir()
        assert proc.returncode == 1
        assert proc.stderr == (
            f"mem_profiler: process {s.pid} writes its profile itself, as {owner}, who may "
            f"not write in {private}: choose a folder it can write in with -o (e.g. -o "
            "/tmp/NAME_)\n"
        )
    finally:
        s.stop()


def test_root_dumps_the_window_another_users_process_opened(server_exe, shared):
    owner = other_user(OWNER)
    s = Server(
        server_exe,
        user=owner,
        sampler_env={"MEMPROF_CAPTURE": "1", "MEMPROF_PREFIX": str(shared / "d_")},
    )
    try:
        assert listed(s.pid)[:3] == [str(s.pid), owner, "capturing"]
        dump = cli("dump", "-p", s.pid)
        assert dump.returncode == 0, dump.stderr
        dumped = shared / f"d_{s.pid}.0001.heap"
        assert dump.stdout == f"{dumped}\n"
        assert dumped.stat().st_uid == pwd.getpwnam(owner).pw_uid
        assert read_heap(dumped).pid == s.pid
        refused = CliAsUser(other_user(THIRD), "dump", "-p", s.pid).result()
        assert refused.returncode == 1
        assert "capturing another user's process needs root" in refused.stderr
    finally:
        s.stop()


def test_root_attaches_to_another_users_process(server_exe, shared):
    owner = other_user(OWNER)
    s = Server(server_exe, user=owner, preload=False)
    pid = s.pid
    try:
        capture = capture_cli(pid, "--attach", "-s", "0.5", "-o", shared / "a_")
        assert capture.returncode == 0, capture.stderr
        assert capture.stderr == f"mem_profiler: loaded the sampler into process {pid}\n"
        s.check_window(shared / f"a_{pid}.0001.heap")
        assert listed(pid)[:4] == [str(pid), owner, "idle", "(attached)"]
        top = cli("top", "-p", pid, "-n", "1")
        assert top.returncode == 0, top.stderr
        refused_as(other_user(THIRD), pid, owner)
        detach = cli("detach", "-p", pid)
        assert detach.returncode == 0, detach.stderr
        assert detach.stdout.startswith(f"detached from process {pid}:")
    finally:
        s.stop()
        for path in block_candidates(pid):
            Path(path).unlink(missing_ok=True)


class WorkerPool:
    """tests/fixtures/worker_pool.c started as root (under `mem_profiler run --idle`
    where `preloaded`), with two workers that become `user`."""

    def __init__(self, exe: Path, user: str, *mode: str, preloaded: bool = True) -> None:
        self.exe, self.user = exe, user
        launch = [MEM_PROFILER, "run", "--idle", "--"] if preloaded else []
        self.proc = subprocess.Popen(
            [*launch, str(exe), user, "2", *mode], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout
        (kind, pid) = self.stdout.readline().split()
        self.workers: list[int] = []
        assert kind == "master"
        self.master = int(pid)
        self.more_workers()

    def more_workers(self) -> list[int]:
        """The next two workers to start (the first two, then two after each SIGHUP)."""
        lines = [self.stdout.readline().split() for _ in range(2)]
        assert [kind for kind, _ in lines] == ["worker", "worker"], lines
        started = sorted(int(pid) for _, pid in lines)
        self.workers += started
        return started

    def wait_for_users_block(self, worker: int) -> None:
        """Until the worker has a block of its user's: made when it started, or within
        a second of its prctl(PR_SET_DUMPABLE, 1) where no hook saw its change of user."""
        uid = pwd.getpwnam(self.user).pw_uid
        wait_for(
            lambda: has_block_of(worker, uid),
            what=f"a block of {self.user}'s for process {worker}",
        )

    def batch(self, worker: int) -> None:
        """Has the worker make its batch; returns once it did."""
        os.kill(worker, signal.SIGUSR1)
        assert self.stdout.readline().split() == ["batch", str(worker)]

    def stop(self) -> None:
        os.kill(self.master, signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0
        for pid in (self.master, *self.workers):
            for path in block_candidates(pid):  # a worker's retired block, root's
                Path(path).unlink(missing_ok=True)


@pytest.fixture
def worker_pool(build_fixture) -> Iterator[Callable[..., WorkerPool]]:
    """Starts worker pools (WorkerPool's arguments but the program); stops them after."""
    folder = Path(tempfile.mkdtemp(prefix="memprof-pool-"))
    folder.chmod(0o755)
    exe = folder / "worker_pool"
    shutil.copy2(build_fixture("worker_pool"), exe)
    pools: list[WorkerPool] = []

    def start(user: str, *mode: str, preloaded: bool = True) -> WorkerPool:
        pools.append(WorkerPool(exe, user, *mode, preloaded=preloaded))
        return pools[-1]

    yield start
    for pool in pools:
        pool.stop()
    shutil.rmtree(folder)


def check_batch(heap: Path, exe: Path) -> None:
    """The window holds the worker's batch, every allocation of it (-c 1)."""
    assert report(heap, exe, "inuse_objects")["worker_batch"][0] == BATCH
    assert report(heap, exe)["worker_batch"][0] == BATCH * BATCH_BYTES


def root_captures_a_batch(pool: WorkerPool, worker: int, out: Path) -> None:
    controller = window_to_interrupt(worker, "-s", "60", "-c", "1", "-o", out / "r_")
    pool.batch(worker)
    controller.send_signal(signal.SIGINT)
    _, err = controller.communicate(timeout=30)
    assert controller.returncode == 0, err
    check_batch(out / f"r_{worker}.0001.heap", pool.exe)


def captured_by_root_and_their_user(pool: WorkerPool, workers: list[int], out: Path) -> None:
    """Root captures the first worker's batch, the workers' user the second's, at -c 1;
    a third user is refused."""
    first, second = workers
    for worker in workers:
        pool.wait_for_users_block(worker)
        assert listed(worker)[:3] == [str(worker), pool.user, "idle"]
        # the one it made as root is retired (and root's list removed it)
        (block,) = block_candidates(worker)
        assert os.stat(block).st_uid == pwd.getpwnam(pool.user).pw_uid

    root_captures_a_batch(pool, first, out)

    theirs = CliAsUser(pool.user, "-p", second, "-s", "60", "-c", "1", "-o", out / "u_")
    wait_for_window(second)
    pool.batch(second)
    theirs.interrupt()
    done = theirs.result()
    assert done.returncode == 0, done.stderr
    heap = out / f"u_{second}.0001.heap"
    assert done.stdout == f"succeeded in collecting memory data!  {heap}\n"
    check_batch(heap, pool.exe)

    refused_as(other_user(THIRD), second, pool.user)


def test_workers_that_became_a_user_are_captured_by_it_and_by_root(worker_pool, shared):
    pool = worker_pool(other_user(OWNER))
    captured_by_root_and_their_user(pool, pool.workers, shared)
    assert listed(pool.master)[:3] == [str(pool.master), "root", "idle"]


def test_workers_forked_after_a_reload_of_an_attached_master(worker_pool, shared):
    """The master attached while it runs, its workers forked after a SIGHUP: no hook
    sees their change of user (an attached process is hooked only while a window is
    open), the control thread does."""
    pool = worker_pool(other_user(OWNER), preloaded=False)
    attach = capture_cli(pool.master, "--attach", "-s", "0.2", "-o", shared / "m_")
    assert attach.returncode == 0, attach.stderr
    os.kill(pool.master, signal.SIGHUP)
    captured_by_root_and_their_user(pool, pool.more_workers(), shared)


def test_a_worker_left_undumpable_is_roots_alone(worker_pool, shared):
    """Without prctl(PR_SET_DUMPABLE, 1) after its change of user, its user may not
    ptrace it: its block stays root's."""
    owner = other_user(OWNER)
    pool = worker_pool(owner, "nodump")
    worker = pool.workers[0]
    assert listed(worker)[:3] == [str(worker), owner, "idle"]
    for attach in ([], ["--attach"]):  # the sampler is loaded: nothing to attach
        proc = CliAsUser(owner, "-p", worker, *attach, "-s", "0.2", "-o", shared / "n_").result()
        assert (proc.returncode, proc.stderr) == (
            1,
            f"mem_profiler: the control block of process {worker} is root's: {owner} may "
            "not ptrace it (it can become root again, or it is not dumpable since it "
            "changed user), so only root can capture it\n",
        )
    root_captures_a_batch(pool, worker, shared)


# --- Debian's nginx -----------------------------------------------------------------

NGINX = "/usr/sbin/nginx"
NGINX_CONF = """
user www-data;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{ listen 127.0.0.1:{port}; location / {{ return 200 "hi"; }} }}
}}
"""


class Nginx:
    """Debian's nginx started as root with one worker that becomes www-data, on a free
    port, under `mem_profiler run --idle` where `preloaded`."""

    def __init__(self, folder: Path, preloaded: bool) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(folder=folder, port=self.port))
        launch = [MEM_PROFILER, "run", "--idle", "--"] if preloaded else []
        self.proc = subprocess.Popen([*launch, NGINX, "-c", str(conf), "-g", "daemon off;"])
        pid_file = folder / "nginx.pid"
        self.master = int(wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip()))
        self.worker = self.next_worker(None)

    def next_worker(self, old: int | None) -> int:
        """The master's worker, once it is not `old` (after a reload)."""

        def worker() -> int | None:
            children = [
                int(e.name)
                for e in os.scandir("/proc")
                if e.name.isdigit() and procfs.parent_pid(int(e.name)) == self.master
            ]
            new = [pid for pid in children if pid != old and procfs.owner_uid(pid) != 0]
            return new[0] if len(children) == 1 and new else None

        return wait_for(worker, what="nginx's worker")

    def requests(self, count: int) -> None:
        for _ in range(count):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=10) as r:
                assert r.read() == b"hi"

    def reload(self) -> int:
        """SIGHUP: a new worker, forked now; the old one leaves."""
        os.kill(self.master, signal.SIGHUP)
        self.worker = self.next_worker(self.worker)
        return self.worker

    def stop(self) -> None:
        os.kill(self.master, signal.SIGTERM)
        self.proc.wait(timeout=30)


@pytest.fixture
def nginx(tmp_path) -> Iterator[Callable[[bool], Nginx]]:
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (make deps installs nginx-light)")
    started: list[Nginx] = []

    def start(preloaded: bool) -> Nginx:
        started.append(Nginx(tmp_path, preloaded))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def check_requests(heap: Path, count: int) -> None:
    """The window holds, at -c 1, the pools of the test's `count` connections, each
    accepted once and carrying one request."""
    made = report(heap, Path(NGINX), "alloc_objects")
    assert made["ngx_event_accept"][1] == count
    assert made["ngx_http_create_request"][1] == count


def root_and_www_data_capture(server: Nginx, out: Path) -> None:
    worker, uid = server.worker, pwd.getpwnam("www-data").pw_uid
    wait_for(
        lambda: has_block_of(worker, uid),
        what="a block of www-data's",
    )
    assert listed(worker)[:3] == [str(worker), "www-data", "idle"]
    controller = window_to_interrupt(worker, "-s", "60", "-c", "1", "-o", out / "r_")
    server.requests(40)
    controller.send_signal(signal.SIGINT)
    _, err = controller.communicate(timeout=30)
    assert controller.returncode == 0, err
    check_requests(out / f"r_{worker}.0001.heap", 40)

    theirs = CliAsUser("www-data", "-p", worker, "-s", "60", "-c", "1", "-o", out / "w_")
    wait_for_window(worker)
    server.requests(60)
    theirs.interrupt()
    done = theirs.result()
    assert done.returncode == 0, done.stderr
    check_requests(out / f"w_{worker}.0001.heap", 60)  # the w_ prefix's first window

    refused_as(other_user(THIRD), worker, "www-data")


@pytest.mark.parametrize("preloaded", [True, False], ids=["run-idle", "attached"])
def test_nginx_workers_captured_by_root_and_www_data(nginx, shared, preloaded):
    """Debian's nginx: its worker, and the one a reload (SIGHUP) forks, each captured by
    root and by www-data; started under `run --idle`, or attached to (its master)."""
    server = nginx(preloaded)
    if preloaded:
        root_and_www_data_capture(server, shared)
    else:
        attach = capture_cli(server.master, "--attach", "-s", "0.2", "-o", shared / "m_")
        assert attach.returncode == 0, attach.stderr
    server.reload()
    root_and_www_data_capture(server, shared)
