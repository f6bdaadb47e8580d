"""Waiting on processes, running a command line within limits, and a second user to
run targets as."""

from __future__ import annotations

import pwd
import resource
import subprocess
import sys
import time
from pathlib import Path

AS_LIMIT = 1 << 30  # address space for runs that must not read a huge input into memory


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# Runs argv from a small interpreter of its own and prints its peak RSS (kB) last: a
# child forked by the test's process would count the test's pages as its own until exec.
_PEAK_RSS_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_with_peak_rss(*argv: str | Path, timeout: float = 60) -> tuple[int, str, int]:
    """argv's exit status, stderr and peak resident set (kB)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_LAUNCHER, *map(str, argv)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout,
    )  # fmt: skip
    err, _, peak = proc.stderr.rstrip("\n").rpartition("\n")
    return proc.returncode, err, int(peak)


def limited_run(*argv: str | Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """A console script with its address space limited to AS_LIMIT, and a timeout."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, preexec_fn=limit
    )


def other_user(name: str) -> str:
    """The user `name`, made (without a home or a login shell) if missing."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
        )
    return name


def in_a_pid_namespace(argv: list[str], env: dict[str, str] | None = None, ready: str = ""):
    """argv as process 1 of a PID namespace of its own (a container's, as far as pids
    go), once it printed `ready`: (unshare's Popen, stdin and stdout piped; the program's
    pid here). Skips where this user may not make one."""
    import pytest

    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        pytest.skip(f"no PID namespace can be made here: {proc.stderr.read().strip()}")
    assert line.strip() == ready, line
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return proc, int(children[0])
