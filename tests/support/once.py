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
