"""Opening the files a user names: regular files only, and read with a bound.

Reading a FIFO waits for a writer forever, a device such as /dev/zero never ends, and a
sparse file of many gigabytes would be read into memory whole: each is refused in one
sentence before anything is read. Errors of the operating system (a missing file, no
permission) are the caller's to word, or read_errors' usual sentence."""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from collections.abc import Iterator
from typing import BinaryIO

# .heap and .memlog files: the sampler's tables and --log-cap keep real ones far smaller.
MAX_PROFILE_BYTES = 4 << 30

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def open_regular(path: str, what: str, error: type[Exception]) -> BinaryIO:
    """`path` opened for reading in binary; `error` (one sentence) if it is not a regular
    file. `what` says what the file should have been: "a .heap file"."""
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer. O_NOCTTY: a terminal
    # named by mistake does not become this process's controlling terminal.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise error(f"{path} is a directory, not {what}.")
        kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
        raise error(f"{path} is {kind}, not {what}: only regular files are read.")
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def read_errors(path: str, error: type[Exception]) -> Iterator[None]:
    """The operating system's errors in reading `path` as one sentence (`error`)."""
    try:
        yield
    except FileNotFoundError:
        raise error(f"{path} does not exist.") from None
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}.") from None


def read_regular(
    path: str, what: str, error: type[Exception], limit: int = MAX_PROFILE_BYTES
) -> bytes:
    """The contents of the regular file `path` (see open_regular) as long as it was when
    opened (what a writer appends meanwhile is left out); `error` if that is more than
    `limit` bytes."""
    with open_regular(path, what, error) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise error(
                f"{path} is {size:,} bytes, more than {what} can sanely be"
                f" ({limit:,} at most): check that it is {what}."
            )
        return f.read(size)


def other_owner(path: str | None) -> int | None:
    """The uid that owns `path` when that is not this process's (root reading a user's
    profile); None when it is, or cannot be told."""
    try:
        owner = os.stat(path).st_uid if path else None
    except OSError:
        return None
    return owner if owner != os.geteuid() else None


def readable_by(path: str, uid: int) -> bool:
    """Whether the user `uid` may read `path`, by the permission bits of the file and of
    each folder on the way to it (ACLs aside): a reader acting on that user's behalf
    (root rendering a user's profile) must not show what the user could not read."""
    if uid == 0:
        return True
    try:
        user = pwd.getpwuid(uid)
        groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    except KeyError:
        groups = set()
    path = os.path.abspath(path)
    folders = [os.path.dirname(path)]
    while folders[-1] != "/":
        folders.append(os.path.dirname(folders[-1]))
    try:
        checks = [(path, stat.S_IRUSR)] + [(folder, stat.S_IXUSR) for folder in folders]
        for name, user_bit in checks:
            st = os.stat(name)
            if st.st_uid == uid:
                bit = user_bit
            elif st.st_gid in groups:
                bit = user_bit >> 3
            else:
                bit = user_bit >> 6
            if not st.st_mode & bit:
                return False
    except OSError:
        return False
    return True
