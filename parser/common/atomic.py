"""Write a file so that readers see either the old or the complete new content."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from typing import IO

from mem_profiler.core.errors import UserError
from mem_profiler.core.user_paths import Reached, reach, trusted, user_name

_UMASK = os.umask(0)
os.umask(_UMASK)
# the random part of the temporaries' names: mkstemp's, and ours (hex)
_TEMP_NAME = re.compile(r"[a-z0-9_]{8}")
# An older writer's .<name>.<random>.tmp had no lock: never taken for a dead one's.
_LOCKED_TEMP = ".locked.tmp"


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", special_in_place: bool = True
) -> Iterator[IO]:
    """Open a temporary file next to `path`; on success rename it onto `path`.

    On an exception the temporary file is removed and `path` is left untouched. The
    folder is reached without following another user's link (user_paths.reach), and the
    file is made and renamed in it by descriptor; another user's link in place of the
    file is replaced, never written through. A special file there (/dev/null, a FIFO, a
    terminal) of this user's or root's is written in place, as a user who names one for
    an output wants; another user's is refused. Without `special_in_place` (a name of
    the program's own choosing, where such a file can only be a mistake or a trap) it is
    replaced like any other.
    """
    path = os.fspath(path)
    with reach(path) as reached:
        entry = reached.entry
        if reached.kernel_link and special_in_place:  # /dev/stdout: the kernel's
            with _in_place(reached, mode, follow=True) as f:
                yield f
            return
        if entry is not None and not reached.others_link and stat.S_ISDIR(entry.st_mode):
            raise IsADirectoryError(21, "Is a directory", path)
        plain = reached.others_link or entry is None or stat.S_ISREG(entry.st_mode)
        if entry is not None and not plain and special_in_place:
            if not trusted(entry.st_uid):
                raise UserError(
                    f"{path} is a special file of another user ({user_name(entry.st_uid)}), "
                    "which mem_profiler does not write into: name another file."
                )
            with _in_place(reached, mode, follow=False) as f:
                yield f
            return
        folder = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=reached.folder)
    try:
        _remove_dead_temporaries(folder, reached.name)
        fd, tmp = _locked_temporary(folder, reached.name)
        try:
            with os.fdopen(fd, mode) as f:
                yield f
                f.flush()
                # made 0600; give what open() would, by descriptor
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
                # before the close: the lock says its writer lives
                os.replace(tmp, reached.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
    finally:
        os.close(folder)


@contextlib.contextmanager
def _in_place(reached: Reached, mode: str, follow: bool) -> Iterator[IO]:
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(reached.name, flags, dir_fd=reached.folder)
    with os.fdopen(fd, mode) as f:
        yield f


def _locked_temporary(folder: int, name: str) -> tuple[int, str]:
    """A new .<name>.<random>.locked.tmp in `folder`, 0600, locked (flock) until it is
    closed, so that the next writer can tell it from a killed writer's."""
    while True:
        tmp = f".{name}.{secrets.token_hex(4)}{_LOCKED_TEMP}"
        try:
            fd = os.open(
                tmp,
                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=folder,
            )
        except FileExistsError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return fd, tmp
        os.close(fd)  # removed as a dead writer's before it was locked


def _remove_dead_temporaries(folder: int, name: str) -> None:
    """Removes the temporaries of `name` that no writer holds locked (theirs were
    killed), if they are regular files of ours; never a link, nor another user's."""
    prefix = f".{name}."
    for entry in os.listdir(folder):
        if not (entry.startswith(prefix) and entry.endswith(_LOCKED_TEMP)):
            continue
        if _TEMP_NAME.fullmatch(entry[len(prefix) : -len(_LOCKED_TEMP)]):
            with contextlib.suppress(OSError):
                _remove_if_dead(folder, entry)


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
