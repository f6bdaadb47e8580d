"""Reaching the files a user names without another user redirecting the reach: every
read and write of a user-named path goes through `reach`, which walks the path a folder
at a time by descriptor and follows a symbolic link only where it is this user's or
root's. Another user's link on the way is refused (on the last step a writer replaces
it); a folder or file that the user a profile is read for may not reach is refused too.
What was checked is what is opened: each step opens what it checked (O_NOFOLLOW), and the
checks are made on the open descriptors."""

from __future__ import annotations

import os
import pwd
import stat
from collections import deque
from dataclasses import dataclass

from mem_profiler.core.errors import UserError

_MAX_LINKS = 40  # as the kernel's path walk
_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(UserError):
    """A path that another user could redirect: one sentence."""


class NotReadableFor(UserError):
    """A file that the user it would be read for may not read."""

    def __init__(self, path: str, uid: int) -> None:
        super().__init__(f"{path} is not readable by uid {uid}")
        self.uid = uid


@dataclass
class Reached:
    """Where a path leads: its folder (a descriptor, O_PATH), the last step's name in it,
    and what that name is (None: nothing there yet)."""

    folder: int
    name: str
    entry: os.stat_result | None
    real: str  # the path as walked, links resolved
    others_link: bool = False  # the name is another user's link, left unfollowed
    kernel_link: bool = False  # a /proc link (/dev/stdout's): the kernel's, opened as it is

    def close(self) -> None:
        os.close(self.folder)

    def __enter__(self) -> Reached:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trusted(uid: int) -> bool:
    """Whether a link or special file of `uid` may lead this process: its own or root's."""
    return uid in (0, os.geteuid())


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def reach(
    path: str | os.PathLike[str], for_uid: int | None = None, follow_last: bool = True
) -> Reached:
    """Walks `path` (OSError as the walk meets it: a missing folder, no permission).
    PathRefused for another user's link before the last step, NotReadableFor a folder
    `for_uid` may not enter. The last step's link is followed when it is trusted and `follow_last`;
    another user's is left unfollowed (others_link)."""
    path = os.fspath(path)
    if not path:
        raise FileNotFoundError(2, "No such file or directory", path)
    parts = deque(path.split("/"))
    start = "/" if path.startswith("/") else "."
    folder = os.open(start, _PATH_FLAGS)
    real = [] if start == "/" else os.getcwd().strip("/").split("/")
    links = 0
    try:
        while parts:
            name = parts.popleft()
            if name in ("", "."):
                if not parts:
                    name = "."
                else:
                    continue
            if name == ".." and parts:
                folder = _step(folder, "..")
                real = real[:-1]
                continue
            try:
                entry = os.stat(name, dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                if parts:
                    raise
                return Reached(folder, name, None, _joined(real, name))
            last = not parts
            if stat.S_ISLNK(entry.st_mode) and (not last or follow_last):
                if real[:1] == ["proc"]:  # /proc/PID/root, /proc/self/fd/1: the kernel's
                    if last:
                        return Reached(folder, name, entry, _joined(real, name), kernel_link=True)
                    inner = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=folder)
                    os.close(folder)
                    folder = inner
                    real.append(name)
                    continue
                if not trusted(entry.st_uid):
                    if last:
                        return Reached(folder, name, entry, _joined(real, name), others_link=True)
                    raise PathRefused(
                        f"{path}: {_joined(real, name)} is a link of another user "
                        f"({user_name(entry.st_uid)}), which mem_profiler does not follow: "
                        "name the file it leads to, if that is the one you mean"
                    )
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(40, "Too many levels of symbolic links", path)
                target = os.readlink(name, dir_fd=folder)
                if target.startswith("/"):
                    os.close(folder)
                    folder, real = os.open("/", _PATH_FLAGS), []
                parts.extendleft(reversed(target.split("/")))
                continue
            if last:
                return Reached(folder, name, entry, _joined(real, name))
            folder = _step(folder, name, for_uid, path)
            real.append(name)
    except BaseException:
        os.close(folder)
        raise
    return Reached(folder, ".", os.stat(folder), "/" + "/".join(real))


def _step(folder: int, name: str, for_uid: int | None = None, path: str = "") -> int:
    """The folder `name` in `folder`, opened (not through a link: O_NOFOLLOW) and checked
    on its descriptor, in place of `folder`, which is closed once it is."""
    inner = os.open(name, _PATH_FLAGS, dir_fd=folder)
    if for_uid is not None and not permits(os.fstat(inner), for_uid, stat.S_IXUSR):
        os.close(inner)
        raise NotReadableFor(path, for_uid)
    os.close(folder)
    return inner


def _joined(real: list[str], name: str) -> str:
    return "/" + "/".join([*real, name]) if name != "." else "/" + "/".join(real)


def permits(st: os.stat_result, uid: int, user_bit: int) -> bool:
    """Whether `uid` has the permission `user_bit` (S_IRUSR, S_IXUSR) on what `st`
    describes, by its owner, group and other bits (ACLs aside); root has all."""
    if uid == 0:
        return True
    try:
        user = pwd.getpwuid(uid)
        groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    except KeyError:
        groups = set()
    if st.st_uid == uid:
        bit = user_bit
    elif st.st_gid in groups:
        bit = user_bit >> 3
    else:
        bit = user_bit >> 6
    return bool(st.st_mode & bit)


def open_folder(path: str) -> int:
    """The folder `path`, open for listing, reached as `reach` reaches a path (OSError,
    PathRefused)."""
    with reach(path) as reached:
        if reached.entry is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        if reached.others_link:
            raise PathRefused(
                f"{path} is a link of another user ({user_name(reached.entry.st_uid)}), which "
                "mem_profiler does not follow: name the folder it leads to, if that is the "
                "one you mean"
            )
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        return os.open(
            reached.name,
            flags | (0 if reached.kernel_link else os.O_NOFOLLOW),
            dir_fd=reached.folder,
        )
