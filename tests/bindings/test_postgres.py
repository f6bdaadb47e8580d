"""Debian's PostgreSQL under pgbench (issue 23): a cluster of the postgres user, whose
postmaster forks a backend per connection; root captures a backend and the postmaster
while pgbench runs, with the server started under `mem_profiler run --idle` or attached
to, and no transaction fails."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.paths import MEM_PROFILER
from support.processes import wait_for
from support.profiling import capture_cli, report, total, window_to_interrupt

from mem_profiler.control import procfs

pytestmark = pytest.mark.long
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
PORT = "5432"  # on a Unix socket in the cluster's own folder only
BENCH_SECONDS = "20"  # pgbench's run: the captures take a few seconds of it
# Its transactions a second, all clients together: a backend's 1 s window at -c 1024 still
# sees some 5 MB of queries' memory (the test asks for 1), without pgbench and the server
# taking both cores for the whole run (20 CPU-s less a test)
BENCH_RATE = "50"


class Postgres:
    """A cluster made by initdb as postgres in a folder of its own, its postmaster
    started as postgres (runuser) under `mem_profiler run --idle` where `preloaded`."""

    def __init__(self, preloaded: bool) -> None:
        self.bin = PG_BINS[-1]
        self.folder = Path(tempfile.mkdtemp(prefix="memprof-pg-"))
        self.folder.chmod(0o755)
        owner = pwd.getpwnam("postgres")
        os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        data = self.folder / "data"
        self.as_postgres("initdb", "-D", data, "-A", "trust", "-U", "postgres").check_returncode()
        launch = [MEM_PROFILER, "run", "--idle", "--"] if preloaded else []
        server: list[str | Path] = [
            self.bin / "postgres",
            "-D",
            data,
            "-k",
            self.folder,
            "-p",
            PORT,
        ]
        self.proc = subprocess.Popen(
            [*launch, "runuser", "-u", "postgres", "--", *server, "-c", "listen_addresses="],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pid_file = data / "postmaster.pid"
        self.master: int | None = None
        try:
            self.master = int(
                wait_for(lambda: pid_file.is_file() and pid_file.read_text().split()[0])
            )
            wait_for(lambda: self.as_postgres("pg_isready", *self.address()).returncode == 0)
            self.as_postgres(
                "pgbench", "-i", "-s", "2", *self.address(), "postgres"
            ).check_returncode()
        except BaseException:
            self.proc.kill()  # runuser, or run: the server is the postmaster's to end
            self.stop()
            raise

    def address(self) -> list[str | Path]:
        return ["-h", self.folder, "-p", PORT]

    def as_postgres(self, program: str, *args: str | Path) -> subprocess.CompletedProcess:
        argv = ["runuser", "-u", "postgres", "--", self.bin / program, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    def pgbench(self, *args: str) -> subprocess.Popen:
        argv = ["runuser", "-u", "postgres", "--", self.bin / "pgbench", *args, *self.address()]
        argv.append("postgres")
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def backends(self) -> list[int]:
        """The postmaster's children serving a client (their title names its socket)."""
        return [
            int(e.name)
            for e in os.scandir("/proc")
            if e.name.isdigit()
            and procfs.parent_pid(int(e.name)) == self.master
            and "[local]" in procfs.cmdline(int(e.name))
        ]

    def stop(self) -> None:
        if self.master is not None:
            os.kill(self.master, signal.SIGINT)  # a fast shutdown
        self.proc.wait(timeout=60)
        shutil.rmtree(self.folder)


@pytest.fixture
def postgres() -> Iterator[Callable[[bool], Postgres]]:
    if not PG_BINS:
        pytest.skip("PostgreSQL is not installed (make deps installs postgresql)")
    started: list[Postgres] = []

    def start(preloaded: bool) -> Postgres:
        started.append(Postgres(preloaded))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def nothing_failed(bench: subprocess.Popen) -> None:
    out, _ = bench.communicate(timeout=120)
    assert bench.returncode == 0 and "number of failed transactions: 0 (0.000%)" in out, out


@pytest.mark.parametrize("preloaded", [True, False], ids=["run-idle", "attached"])
def test_root_captures_a_backend_and_the_postmaster_under_pgbench(postgres, preloaded):
    pg = postgres(preloaded)
    out = pg.folder  # the processes write their profiles themselves, as postgres
    attach = [] if preloaded else ["--attach"]
    exe = pg.bin / "postgres"
    clients = pg.pgbench("-c", "2", "-j", "1", "-R", BENCH_RATE, "-T", BENCH_SECONDS)
    reconnecting = None
    try:
        # pgbench's first connection, which only reads the scale, ends as its clients'
        # start: a backend gone before the capture began is passed over for the next
        for _ in range(10):
            backend = wait_for(lambda: pg.backends()[:1], what="pgbench's backends")[0]
            proc = capture_cli(backend, *attach, "-s", "1", "-c", "1024", "-o", out / "b_")
            if f"there is no process {backend}" not in proc.stderr:
                break
        assert proc.returncode == 0, proc.stderr
        heap = out / f"b_{backend}.0001.heap"
        made = total(heap, exe, "alloc_space")
        assert made > 1e6  # the queries' memory contexts
        assert report(heap, exe, "alloc_space")["PostgresMain"][1] == pytest.approx(made)

        # a connection per transaction
        reconnecting = pg.pgbench("-C", "-c", "1", "-R", BENCH_RATE, "-T", BENCH_SECONDS)
        # the window lasts until the postmaster has forked a backend inside it, however
        # long a loaded machine keeps pgbench from connecting
        controller = window_to_interrupt(
            pg.master, *attach, "-s", "60", "-c", "1", "-o", out / "m_"
        )
        opened = set(pg.backends())
        wait_for(lambda: set(pg.backends()) - opened, what="a backend forked in the window")
        controller.send_signal(signal.SIGINT)
        _, err = controller.communicate(timeout=30)
        assert controller.returncode == 0, err
        heap = out / f"m_{pg.master}.0001.heap"
        objects = total(heap, exe, "alloc_objects")
        assert objects >= 1  # what it keeps for each connection it forks a backend for
        assert report(heap, exe, "alloc_objects")["PostmasterMain"][1] == objects
    finally:
        nothing_failed(clients)
        if reconnecting is not None:
            nothing_failed(reconnecting)
