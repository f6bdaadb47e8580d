"""Write a file so that readers see either the old or the complete new content."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from mem_profiler.core.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to `path`; on success rename it onto `path`.

    On an exception the temporary file is removed and `path` is left untouched. A path
    that is there and no regular file (/dev/null, a FIFO, a terminal) is written in
    place: a rename would put a file where the device was.
    """
    path = os.fspath(path)
    try:
        special = not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        special = False  # not there yet (or unreadable: the rename says what is wrong)
    if special:
        with open(path, mode) as f:
            yield f
        return
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            # mkstemp makes 0600; give what open() would.  By descriptor: whoever can
            # write in the folder can swap the name for a link meanwhile.
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
