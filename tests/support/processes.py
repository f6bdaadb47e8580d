"""Waiting on processes, running a command line within limits, and a second user to
run targets as."""

from __future__ import annotations

import pwd
import resource
import subprocess
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
