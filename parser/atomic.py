"""Write a file so that readers see either the old or the complete new content."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from mem_profiler.core.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)
_MKSTEMP_NAME = re.compile(r"[a-z0-9_]{8}")  # the random part of mkstemp's names
# An older writer's .<name>.<random>.tmp had no lock: never taken for a dead one's.
_LOCKED_TEMP = ".locked.tmp"


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", special_in_place: bool = True
) -> Iterator[IO]:
    """Open a temporary file next to `path`; on success rename it onto `path`.

    On an exception the temporary file is removed and `path` is left untouched. A path
    that is there and no regular file (/dev/null, a FIFO, a terminal) is written in
    place, as a user who names one for an output wants: a rename would put a file where
    the device was. Without `special_in_place` (a name of the program's own choosing,
    where such a file can only be a mistake or a trap) it is replaced like any other.
    """
    path = os.fspath(path)
    try:
        special = special_in_place and not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        special = False  # not there yet (or unreadable: the rename says what is wrong)
    if special:
        with open(path, mode) as f:
            yield f
        return
    folder, name = os.path.split(os.path.abspath(path))
    _remove_dead_temporaries(folder, name)
    fd, tmp = _locked_temporary(folder, name)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            # mkstemp makes 0600; give what open() would.  By descriptor: whoever can
            # write in the folder can swap the name for a link meanwhile.
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            os.replace(tmp, path)  # before the close: the lock says its writer lives
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _locked_temporary(folder: str, name: str) -> tuple[int, str]:
    """mkstemp's .<name>.<random>.locked.tmp, locked (flock) until it is closed, so that the
    next writer can tell it from a killed writer's."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=_LOCKED_TEMP, dir=folder)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return fd, tmp
        os.close(fd)  # removed as a dead writer's before it was locked


def _remove_dead_temporaries(folder: str, name: str) -> None:
    """Removes the temporaries of `name` that no writer holds locked (theirs were
    killed), if they are regular files of ours; never a link, nor another user's."""
    prefix = f".{name}."
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return  # the temporary's creation says what is wrong
    try:
        for entry in os.listdir(dir_fd):
            if not (entry.startswith(prefix) and entry.endswith(_LOCKED_TEMP)):
                continue
            if _MKSTEMP_NAME.fullmatch(entry[len(prefix) : -len(_LOCKED_TEMP)]):
                with contextlib.suppress(OSError):
                    _remove_if_dead(dir_fd, entry)
    finally:
        os.close(dir_fd)


def _remove_if_dead(dir_fd: int, entry: str) -> None:
    fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode) or held.st_uid != os.geteuid():
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its writer is alive
        named = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        if (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            os.unlink(entry, dir_fd=dir_fd)
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike[str], content: str | bytes | Iterable[bytes]) -> None:
    """Write content atomically, text, bytes or pieces of bytes (a file too large to hold
    whole); a failure is a UserError naming the file."""
    try:
        with atomic_open(path, "w" if isinstance(content, str) else "wb") as f:
            if isinstance(content, str | bytes):
                f.write(content)
            else:
                for piece in content:
                    f.write(piece)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}.") from None
