"""What the tests build once per run, whichever pytest-xdist worker asks first: a folder
per build, named by what goes into it, made under a lock that the other workers wait on."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def built_once(parent: Path, key: list[str]) -> Iterator[tuple[Path, bool]]:
    """Yields the build's folder and whether it is built already; the build is the body,
    run under the lock, and counts as done only when the body returns."""
    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:16]
    folder = parent / digest
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent / f"{digest}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        done = (folder / ".done").exists()
        folder.mkdir(exist_ok=True)
        yield folder, done
        (folder / ".done").touch()
    finally:
        os.close(fd)


@contextmanager
def alone_or_together(parent: Path, alone: bool) -> Iterator[None]:
    """Held around each test: a test that must run alone (one that sees every process on
    the machine, as the agent does) waits for the others running to end and holds back
    new ones; the rest run together. The turnstile gives the one waiting to run alone
    its turn before tests that come later (flock's shared locks would pass it by)."""
    parent.mkdir(parents=True, exist_ok=True)
    turnstile = os.open(parent / "turnstile.lock", os.O_CREAT | os.O_RDWR, 0o600)
    running = os.open(parent / "running.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(running, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield
    finally:
        os.close(running)
        os.close(turnstile)
