"""What /proc says of a process: the one reader of /proc for the doors into the sampler
(the control block, the controller, the live view, the attach checks). Each function
names what it reads; one whose process is gone answers None (or an empty value) rather
than raising, unless it says otherwise. The tracer's reads and writes of a target's
memory (/proc/<pid>/mem) are ptrace's (attach/ptrace.py): only a tracer may make them."""

from __future__ import annotations

import os

from mem_profiler.core.memory_map import MemoryMapping, parse_maps_line

_CAP_SYS_PTRACE = 19


def no_such_process(pid: int) -> str:
    """The one sentence for a pid that names no process."""
    return f"there is no process {pid}: `mem_profiler list` shows those that can be captured"


def _stat_fields(task_dir: str) -> list[bytes] | None:
    """The fields of <task_dir>/stat (/proc/<pid> or a thread's folder) after the command
    name (field 3, the state, first), or None if it is gone. The name is skipped up to
    its last ')': it may hold any byte."""
    try:
        with open(f"{task_dir}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :].split()


_ENDED = (b"Z", b"X")


def _state(task_dir: str) -> bytes | None:
    fields = _stat_fields(task_dir)
    return None if fields is None else fields[0]


def thread_ids(pid: int) -> set[int]:
    """The threads of pid that have not ended (/proc/<pid>/task: a main thread that
    called pthread_exit stays there, a zombie, until the whole process ends);
    FileNotFoundError if pid is gone."""
    return {
        int(t)
        for t in os.listdir(f"/proc/{pid}/task")
        if _state(f"/proc/{pid}/task/{t}") not in (None, *_ENDED)
    }


def _process_dir(pid: int) -> str:
    """/proc/<pid>, or while pid's main thread has ended (pthread_exit) and others run
    on, the folder of one of those: the main thread's own has no memory map, program
    or root left to show."""
    if _state(f"/proc/{pid}") not in _ENDED:
        return f"/proc/{pid}"
    others = _threads_left(pid)
    return f"/proc/{pid}/task/{min(others)}" if others else f"/proc/{pid}"


def why_stopped(pid: int) -> str | None:
    """The sentence for a process that cannot run until someone lets it (state T: Ctrl-Z
    or SIGSTOP; t: a tracer holds it), None for one that can."""
    letter = _state(_process_dir(pid))
    if letter == b"T":
        return f"process {pid} is stopped (Ctrl-Z or SIGSTOP): continue it with `kill -CONT {pid}`"
    if letter == b"t":
        return (
            f"process {pid} is held stopped by process {tracer_pid(pid)} (a debugger?):"
            " let it go on there"
        )
    return None


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), or None if pid is gone
    (a zombie, ended but not yet reaped by its parent, counts as gone; a process whose
    main thread alone has ended does not)."""
    fields = _stat_fields(f"/proc/{pid}")
    if fields is None or (fields[0] in _ENDED and not _threads_left(pid)):
        return None
    return int(fields[19])


def _threads_left(pid: int) -> set[int]:
    try:
        return thread_ids(pid)
    except OSError:
        return set()


def own_pid_namespace() -> int:
    """The inode of this process's PID namespace (/proc/self/ns/pid): a pid is a number
    in one namespace; 0 if it cannot be read."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def in_another_pid_namespace(pid: int) -> str | None:
    """The sentence for a process of another PID namespace than ours (a container's),
    where it has another pid and names its control block by that one; None for one of
    ours, or one whose namespace cannot be read (another user's)."""
    folder = _process_dir(pid)
    try:
        theirs = os.stat(f"{folder}/ns/pid").st_ino
    except OSError:
        return None
    if theirs == own_pid_namespace() or not own_pid_namespace():
        return None
    inner = _status(pid).get("NStgid")
    there = inner[-1] if inner else "PID"
    # nsenter reads the namespaces of the thread it is given: one that runs
    thread = os.path.basename(folder)
    return (
        f"process {pid} runs in another PID namespace (a container?), as process {there}"
        f" there: capture it from inside, e.g. `nsenter --target {thread} --all "
        f"mem_profiler -p {there}`, with a mem_profiler installed in it"
    )


def parent_pid(pid: int) -> int | None:
    """Field 4 of /proc/<pid>/stat, or None if pid is gone."""
    fields = _stat_fields(f"/proc/{pid}")
    return None if fields is None else int(fields[1])


def owner_uid(pid: int) -> int | None:
    """The user pid runs as (the owner of /proc/<pid>), or None if pid is gone."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def file_credentials(pid: int) -> tuple[int, int, set[int]] | None:
    """(fsuid, fsgid, supplementary groups): the user and groups pid makes and opens
    files as (/proc/<pid>/status), or None if pid is gone."""
    fields = _status(pid)
    if "Uid" not in fields or "Gid" not in fields:
        return None
    return int(fields["Uid"][3]), int(fields["Gid"][3]), {int(g) for g in fields.get("Groups", [])}


def may_write_in(pid: int, folder: str) -> bool:
    """Whether pid may make files in `folder` by its mode bits (search on every folder
    above it, write and search on it); root's processes may. ACLs are not read: a folder
    they open to pid counts as closed."""
    creds = file_credentials(pid)
    if creds is None:
        return False
    uid, gid, groups = creds
    if uid == 0:
        return True
    groups.add(gid)
    path = os.path.abspath(folder)
    wanted = 0o3  # write and search on the folder itself
    while True:
        try:
            st = os.stat(path)
        except OSError:
            return False
        shift = 6 if st.st_uid == uid else 3 if st.st_gid in groups else 0
        if (st.st_mode >> shift) & wanted != wanted:
            return False
        if path == "/":
            return True
        path, wanted = os.path.dirname(path), 0o1


def cmdline(pid: int) -> str:
    """/proc/<pid>/cmdline with its arguments joined by spaces, as the process wrote it
    (unprintable characters included); "" if it cannot be read."""
    try:
        with open(f"{_process_dir(pid)}/cmdline", "rb") as f:
            return f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def exe_file(pid: int) -> str:
    """A path that opens the program pid runs, even once its file was removed or replaced
    (/proc/<pid>/exe)."""
    return f"{_process_dir(pid)}/exe"


def exe_path(pid: int) -> str | None:
    """The path of the program pid runs (where /proc/<pid>/exe points), or None."""
    try:
        return os.readlink(exe_file(pid))
    except OSError:
        return None


def path_in_root(pid: int, path: str | os.PathLike[str]) -> str:
    """A path that opens `path` as pid sees it (through /proc/<pid>/root: its mount
    namespace and chroot)."""
    return f"{_process_dir(pid)}/root{os.fspath(path)}"


def rss_bytes(pid: int) -> int:
    """The resident set of pid (/proc/<pid>/statm), 0 if it is gone."""
    try:
        with open(f"{_process_dir(pid)}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def tracer_pid(pid: int) -> int:
    """The process tracing pid (TracerPid in /proc/<pid>/status), 0 for none or if pid
    is gone."""
    field = _status(pid).get("TracerPid")
    return int(field[0]) if field else 0


def _status(pid: int) -> dict[str, list[str]]:
    """/proc/<pid>/status, each line's values by its key; {} if pid is gone."""
    fields: dict[str, list[str]] = {}
    try:
        with open(f"{_process_dir(pid)}/status") as f:
            for line in f:
                key, _, values = line.partition(":")
                fields[key] = values.split()
    except OSError:
        return {}
    return fields


def has_cap_sys_ptrace() -> bool:
    """Whether this process may trace any other (CAP_SYS_PTRACE among its effective
    capabilities, CapEff in /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_SYS_PTRACE & 1)
    return False


def yama_ptrace_scope() -> int | None:
    """kernel.yama.ptrace_scope (/proc/sys/kernel/yama/ptrace_scope), None without yama."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def memory_map(pid: int) -> list[MemoryMapping]:
    """/proc/<pid>/maps; FileNotFoundError if pid is gone, PermissionError if it is not
    ours to read."""
    with open(f"{_process_dir(pid)}/maps") as f:
        return [m for line in f.read().splitlines() if (m := parse_maps_line(line))]
