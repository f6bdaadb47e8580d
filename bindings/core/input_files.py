"""Opening the files a user names: regular files only, and read with a bound.

Reading a FIFO waits for a writer forever, a device such as /dev/zero never ends, and a
sparse file of many gigabytes would be read into memory whole: each is refused in one
sentence before anything is read. Errors of the operating system (a missing file, no
permission) are the caller's to word, or read_errors' usual sentence."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from typing import BinaryIO

from mem_profiler.core.user_paths import (
    NotReadableFor,
    PathRefused,
    permits,
    reach,
    user_name,
)

# .heap and .memlog files: the sampler's tables and --log-cap keep real ones far smaller.
MAX_PROFILE_BYTES = 4 << 30

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def open_regular(
    path: str | os.PathLike[str], what: str, error: type[Exception], for_uid: int | None = None
) -> BinaryIO:
    """`path` opened for reading in binary; `error` (one sentence) if it is not a regular
    file or if the way to it is another user's link (user_paths.reach); NotReadableFor
    when `for_uid` (the user a profile is read for) may not read it. `what` says what
    the file should have been: "a .heap file"."""
    try:
        with reach(path, for_uid) as reached:
            if reached.others_link and reached.entry is not None:
                raise error(
                    f"{path} is a link of another user ({user_name(reached.entry.st_uid)}), "
                    "which mem_profiler does not follow: name the file it leads to, if that "
                    "is the one you mean."
                )
            # O_NONBLOCK: opening a FIFO would otherwise wait for a writer. O_NOCTTY: a
            # terminal named by mistake does not become this process's controlling terminal.
            flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            if not reached.kernel_link:
                flags |= os.O_NOFOLLOW  # what was checked: not a link swapped in since
            fd = os.open(reached.name, flags, dir_fd=reached.folder)
    except PathRefused as refused:
        raise error(f"{refused}.") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path} is a directory, not {what}.")
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "a special file")
        raise error(f"{path} is {kind}, not {what}: only regular files are read.")
    if for_uid is not None and not permits(st, for_uid, stat.S_IRUSR):
        os.close(fd)
        raise NotReadableFor(os.fspath(path), for_uid)
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
    path: str,
    what: str,
    error: type[Exception],
    limit: int = MAX_PROFILE_BYTES,
    too_large: Callable[[int], Exception] | None = None,
) -> bytes:
    """The contents of the regular file `path` (see open_regular) as long as it was when
    opened (what a writer appends meanwhile is left out); `error` (or too_large(its
    size)) if that is more than `limit` bytes."""
    with open_regular(path, what, error) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            if too_large is not None:
                raise too_large(size)
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
