"""The control block of a process with the sampler loaded: /dev/shm/mem_profiler.<pid>.

The layout mirrors sampler/memprof_control.h (a test compares them field by field);
requests are written here and the target's control thread is woken on a futex.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from cffi import FFI

from mem_profiler.control import defaults, procfs
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.core.file_names import absolute_prefix
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.program_kind import program_kind, unloadable_reason

SEGMENT_DIR = "/dev/shm"
SEGMENT_PREFIX = "mem_profiler."
PATH_MAX = 4096

CDEF = """
struct memprof_control {
    uint64_t magic;
    uint32_t abi;
    int32_t pid;
    uint32_t uid;
    uint32_t pid_ns;
    uint64_t start_time;
    char exe[256];
    uint32_t command_seq;
    uint32_t command;
    uint64_t rate;
    uint64_t device_rate;
    int32_t max_depth;
    uint32_t flags;
    uint64_t deadline_ns;
    uint64_t log_cap;
    uint32_t log_files;
    uint32_t working;
    char prefix[4096];
    uint32_t ack_seq;
    int32_t result;
    uint32_t state;
    uint32_t dumps;
    uint32_t injected;
    uint32_t redirected_slots;
    uint64_t window_start_ns;
    uint64_t window_deadline_ns;
    uint64_t live_samples;
    uint64_t dropped_samples;
    uint64_t heap_live_bytes[8];
    uint64_t heap_peak_bytes[8];
    char last_dump[4096];
    char message[256];
    uint32_t failed_dumps;
    uint32_t window_by_controller;
    uint32_t thread_less;
    char dump_failure[512];
    char own_malloc[4352];
    uint64_t snapshot_since;
    uint64_t snapshot_token;
};
struct timespec { long tv_sec; long tv_nsec; };
long syscall(long number, ...);
"""
MAGIC = 0x31464F52504D454D  # "MEMPROF1"
ABI = 9
# heap_live_bytes/heap_peak_bytes are in the order of HEAPS
CMD_START, CMD_STOP, CMD_STATUS, CMD_DETACH, CMD_DUMP, CMD_SNAPSHOT, CMD_DEADLINE = range(1, 8)
STATE_IDLE, STATE_CAPTURING = 0, 1
START_LOG, START_VIEW = 2, 4  # 1 was live tracking, which every window now has

_SYS_FUTEX = 202  # x86-64
_FLOCK = struct.Struct("hh4xqqi4x")  # struct flock (x86-64): type, whence, start, len, pid
_REQUEST_TURN_S = 60.0  # the longest wait for another controller's request to end
# How long past its timeout a request may take while the process says it is working (a
# dump of many stacks): bounded, for a process that says so and never answers.
MAX_WORKING_S = 120.0
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1

ffi = FFI()
ffi.cdef(CDEF)
BLOCK_SIZE = ffi.sizeof("struct memprof_control")
# The block's file: the struct, and the wake page of a process without its control thread
WAKE_OFFSET, FILE_SIZE, WAKE = 65536, 2 * 65536, b"\xff\xff\xff\xff"
assert BLOCK_SIZE <= WAKE_OFFSET
_libc = ffi.dlopen(None)


class ControlError(RuntimeError):
    """A capture request that cannot be carried out; the message is one sentence."""


class AttachError(Exception):
    """Loading the sampler into a process (attach/inject.py) cannot be done or failed; the
    message is one sentence. Here, with the other errors of the doors into a process,
    so that a command line can catch it without loading the injection's ELF reader."""


class BlockReplaced(ControlError):
    """The process left the block it answered on: it ran exec (the sampler of its new
    program, if it has one, makes a block of its own) or changed its user (and moved its
    block). Its pid is the same: a reader may open it anew."""


class NotPermitted(ControlError):
    """This user may not use the process's block."""


class OtherVersion(ControlError):
    """The process's sampler speaks another control block ABI."""


def segment_path(pid: int) -> str:
    """Where pid's block is made: mem_profiler.<pid>, or, when another user has taken
    that name, mem_profiler.<pid>.<random> (see block_candidates)."""
    return os.path.join(SEGMENT_DIR, f"{SEGMENT_PREFIX}{pid}")


def block_pid(name: str) -> int | None:
    """The pid a /dev/shm entry's name claims a block for, None for other names."""
    if not name.startswith(SEGMENT_PREFIX):
        return None
    digits = name[len(SEGMENT_PREFIX) :].split(".", 1)[0]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def block_candidates(pid: int) -> list[str]:
    """Paths that may hold pid's block, the usual name first; none of them is trusted
    before `_open_trusted` has checked it: anyone can create files in /dev/shm."""
    return candidates_by_pid(pid).get(pid, [])


def candidates_by_pid(only: int | None = None) -> dict[int, list[str]]:
    """block_candidates of every pid named in /dev/shm (or of `only`), in one pass over
    it: anyone may fill it with names."""
    found: dict[int, list[str]] = {}
    try:
        for entry in os.scandir(SEGMENT_DIR):
            pid = block_pid(entry.name)
            if pid is not None and (only is None or pid == only):
                found.setdefault(pid, []).append(entry.path)
    except OSError:
        return {}
    return {pid: sorted(paths, key=len) for pid, paths in found.items()}


def find_block(pid: int) -> str | None:
    """The path of a block for pid that its user (or root) made, or None. It may be an
    earlier process's, or one this user may not open: ControlBlock.open tells."""
    owner = procfs.owner_uid(pid)
    for path in block_candidates(pid):
        fd = None if owner is None else _open_trusted(path, owner)
        if isinstance(fd, int):
            os.close(fd)
        if fd is not None:
            return path
    return None


def remove_stale(path: str) -> None:
    """Removes `path`, a block name whose process is gone, if it is a regular file this
    user may remove (/dev/shm is sticky: its own, or any as root) and no block of a
    process in another PID namespace (whose pid is a number there, not here)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            removable = os.geteuid() == 0 or st.st_uid == os.geteuid()
            if removable and stat.S_ISREG(st.st_mode) and not _other_namespace(fd):
                unlink_if_still(path, st)
        finally:
            os.close(fd)


def unlink_if_still(path: str, judged: os.stat_result) -> None:
    """Unlinks `path` if it still names the file `judged` was taken of: a process that
    ran exec puts its new block where its old one was (a rename over it), and a cleaner
    that judged the old one must not remove the new."""
    with contextlib.suppress(FileNotFoundError):
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (judged.st_dev, judged.st_ino):
            os.unlink(path)


def remove_blocks_of_ended(pid: int) -> None:
    """Removes the blocks an ended process left (killed: no exit handler ran) that this
    user may remove."""
    for path in block_candidates(pid):
        remove_stale(path)


def refusal(pid: int, owner: int) -> str | None:
    """Why this user may not capture pid, run by `owner`, or None if it may: as with
    ptrace, a process is its user's, and every process is open to CAP_SYS_PTRACE."""
    if owner == os.geteuid() or procfs.has_cap_sys_ptrace():
        return None
    return (
        f"process {pid} belongs to {user_name(owner)}: capturing another user's process "
        "needs root (CAP_SYS_PTRACE)"
    )


# The identity at the start of every version's block: magic, abi, pid, uid, pid_ns
# (reserved before ABI 7, 0), start_time (memprof_control.h).
_IDENTITY = struct.Struct("<QIiIIQ")


def _identity(fd: int) -> tuple[int, int, int, int, int]:
    """(magic, abi, pid, pid_ns, start_time) of a block of any version; zeros if it is
    shorter."""
    head = os.pread(fd, _IDENTITY.size, 0)
    if len(head) < _IDENTITY.size:
        return 0, 0, 0, 0, 0
    magic, abi, pid, _, pid_ns, start = _IDENTITY.unpack(head)
    return magic, abi, pid, pid_ns, start


def _other_namespace(fd: int) -> bool:
    """Whether the block is one of a process in another PID namespace than ours."""
    magic, _, _, pid_ns, _ = _identity(fd)
    return magic == MAGIC and pid_ns not in (0, procfs.own_pid_namespace())


def _open_trusted(path: str, owner: int) -> int | str | None:
    """A descriptor of `path` if it is a regular file of `owner` or root, mode 0600, and
    no block of a process in another PID namespace (never following a link nor blocking
    on a FIFO); why this user cannot open it if it is such a file; None otherwise (no
    block: anyone can create files in /dev/shm)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError:
        if not _is_block_file(st, owner):
            return None
        if st.st_uid == 0 and owner == os.geteuid():
            return (
                f"the control block of process {process_of(path)} is root's: "
                f"{user_name(owner)} may not ptrace it (it can become root again, or it is "
                "not dumpable since it changed user), so only root can capture it"
            )
        return (
            f"cannot open the control block of process {process_of(path)}, which belongs "
            f"to {user_name(st.st_uid)}: capturing it needs root"
        )
    except OSError:
        return None
    if not _is_block_file(os.fstat(fd), owner) or _other_namespace(fd):
        os.close(fd)
        return None
    return fd


def _is_block_file(st: os.stat_result, owner: int) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_uid in (owner, 0) and not st.st_mode & 0o077


def process_of(path: str) -> int | None:
    return block_pid(os.path.basename(path))


@dataclass
class Status:
    capturing: bool
    dumps: int
    window_start_ns: int
    window_deadline_ns: int
    live_samples: int
    dropped_samples: int
    heap_live_bytes: dict[str, int]  # unsampled estimates, by heap
    heap_peak_bytes: dict[str, int]  # every window keeps them
    last_dump: str
    injected: bool  # loaded by mem_profiler --attach: hooks by GOT redirection
    redirected_slots: int  # GOT slots holding a hook now
    failed_dumps: int  # dumps that could not be written
    dump_failure: str  # why the last of them failed
    window_by_controller: bool  # the open window was opened by a controller (CMD_START)
    own_malloc: str  # the sentence saying the program's malloc is its own, unseen; or ""
    snapshot_token: int  # of the last snapshot written (CMD_SNAPSHOT's reply)


class ControlBlock:
    """An open control block of a live process that has the sampler loaded."""

    def __init__(self, pid: int, fd: int, mapping: mmap.mmap) -> None:
        self.pid = pid
        self._fd = fd
        self._map = mapping
        self._c = ffi.from_buffer("struct memprof_control *", mapping)

    @classmethod
    def open(
        cls, pid: int, candidates: list[str] | None = None, command: str = "mem_profiler"
    ) -> ControlBlock:
        """Opens and checks pid's block (among `candidates`, else block_candidates);
        ControlError (one sentence) when it cannot be used, which names `command` -p PID
        --attach as the way to load the sampler. Blocks of ours left by an earlier
        process with the same pid are removed."""
        start = procfs.start_time(pid)
        if start is None:
            raise ControlError(procfs.no_such_process(pid))
        owner = procfs.owner_uid(pid)
        if owner is None:  # it ended since
            raise ControlError(procfs.no_such_process(pid))
        refused = refusal(pid, owner)
        if refused:
            raise NotPermitted(refused)
        elsewhere = procfs.in_another_pid_namespace(pid)
        if elsewhere:  # its block, if any, names it by its pid there
            raise ControlError(elsewhere)
        stale = execed = False
        for path in block_candidates(pid) if candidates is None else candidates:
            fd = _open_trusted(path, owner)
            if not isinstance(fd, int):
                refused = refused or fd
                continue
            magic, abi, named_pid, _, named_start = _identity(fd)
            judged = os.fstat(fd)
            names_live = (magic, named_pid, named_start) == (MAGIC, pid, start)
            if names_live and abi != ABI:
                os.close(fd)  # the live process's, of another version: left alone
                raise OtherVersion(
                    f"process {pid} runs another version of the sampler "
                    f"(control block ABI {abi}, this mem_profiler speaks "
                    f"{ABI}): capture it with that version's mem_profiler"
                )
            if names_live and judged.st_size in (BLOCK_SIZE, FILE_SIZE):
                block = cls(pid, fd, mmap.mmap(fd, BLOCK_SIZE))
                if block.made_by_its_exe():
                    return block
                block.close()
                execed = True
            else:
                os.close(fd)
            # of an earlier process that had this pid, or retired, or made before an exec
            unlink_if_still(path, judged)
            stale = True
        if refused:
            raise NotPermitted(refused)
        if execed:  # its new program's sampler, if it has one, has yet to make its block
            raise BlockReplaced(ran_exec_message(pid))
        message = no_sampler_message(pid, command)
        raise ControlError(
            f"removed a stale control block of an earlier process {pid}; " + message
            if stale
            else message
        )

    def _gone_why(self) -> str:
        """Why the process no longer answers on this block, which it left: it moved to a
        block of its new user's, or it ran exec and the sampler went with its image."""
        if self._c.magic == 0:
            return (
                f"process {self.pid} changed its user and moved its control block: "
                "run the command again"
            )
        return ran_exec_message(self.pid)

    def made_by_its_exe(self) -> bool:
        """The block names the program the process runs (its identity was checked when
        it was opened)."""
        return procfs.exe_path(self.pid) == os.fsdecode(ffi.string(self._c.exe))

    def lock(self) -> None:
        """One controller's window at a time per process (`dump` takes none)."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ControlError(
                f"process {self.pid} is being captured by another mem_profiler"
            ) from None

    @contextlib.contextmanager
    def _one_request_at_a_time(self) -> Iterator[None]:
        """The requests of several controllers (a window's, a dump's) in turn: an open
        file description lock on the block's first byte, apart from the window's flock;
        each holds it at most for its own timeout."""
        end = time.monotonic() + _REQUEST_TURN_S
        while True:
            try:
                fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, 0, 0, 1, 0))
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > end:
                raise ControlError(
                    f"process {self.pid} was answering another mem_profiler for "
                    f"{_REQUEST_TURN_S:g} s: try again"
                )
            time.sleep(0.005)
        try:
            yield
        finally:
            fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, 0, 0, 1, 0))

    def request(
        self,
        command: int,
        timeout: float = 5.0,
        *,
        rate: int = 0,
        device_rate: int = defaults.DEVICE_RATE,
        depth: int = 0,
        deadline_ns: int = 0,
        prefix: str = "",
        flags: int = 0,
        log_cap: int = 0,
        log_files: int = 0,
        since: int = 0,
    ) -> Status:
        """Sends one request and waits for the control thread's reply: START takes every
        parameter, SNAPSHOT its prefix and `since` (the token of the reader's last
        snapshot), DEADLINE its deadline_ns."""
        with self._one_request_at_a_time():
            c = self._c
            if command in (CMD_START, CMD_SNAPSHOT):
                encoded = os.fsencode(prefix)  # a path may be any bytes but NUL
                if len(encoded) >= PATH_MAX - 32:
                    raise ControlError("the output prefix is too long")
                c.prefix = encoded + b"\0"
            if command == CMD_SNAPSHOT:
                c.snapshot_since = since
            if command in (CMD_START, CMD_DEADLINE):
                c.deadline_ns = deadline_ns
            if command == CMD_START:
                c.rate, c.device_rate, c.max_depth = rate, device_rate, depth
                c.flags = flags
                c.log_cap, c.log_files = log_cap, log_files
            c.command = command
            seq = (c.command_seq + 1) & 0xFFFFFFFF
            c.command_seq = seq
            self._futex(ffi.addressof(c, "command_seq"), _FUTEX_WAKE, 1)
            if c.thread_less:  # its next allocation reads the wake word and makes the thread
                os.pwrite(self._fd, WAKE, WAKE_OFFSET)
            self._wait_ack(seq, timeout)
            if c.result != 0:
                reason = ffi.string(c.message).decode(errors="replace") or os.strerror(c.result)
                raise ControlError(f"process {self.pid} refused the request: {reason}")
            return self.status()

    def start(self, settings: CaptureSettings, deadline_ns: int, view: bool = False) -> Status:
        """Opens a window as `settings` say (its rate, device rate, depth, prefix, mode
        and the log's caps), which closes at deadline_ns; `view`: a live view's."""
        return self.request(
            CMD_START,
            rate=settings.rate,
            device_rate=settings.device_rate,
            depth=settings.depth,
            deadline_ns=deadline_ns,
            prefix=absolute_prefix(settings.prefix),
            flags=(START_LOG if settings.log else 0) | (START_VIEW if view else 0),
            log_cap=settings.log_cap or 0,  # 0: the process's own
            log_files=settings.log_files or 0,
        )

    def status(self) -> Status:
        c = self._c
        return Status(
            capturing=c.state == STATE_CAPTURING,
            dumps=c.dumps,
            window_start_ns=c.window_start_ns,
            window_deadline_ns=c.window_deadline_ns,
            live_samples=c.live_samples,
            dropped_samples=c.dropped_samples,
            heap_live_bytes={h: c.heap_live_bytes[i] for i, h in enumerate(HEAPS)},
            heap_peak_bytes={h: c.heap_peak_bytes[i] for i, h in enumerate(HEAPS)},
            last_dump=ffi.string(c.last_dump).decode(errors="replace"),
            injected=bool(c.injected),
            redirected_slots=c.redirected_slots,
            failed_dumps=c.failed_dumps,
            dump_failure=ffi.string(c.dump_failure).decode(errors="replace"),
            window_by_controller=bool(c.window_by_controller),
            own_malloc=ffi.string(c.own_malloc).decode(errors="replace"),
            snapshot_token=c.snapshot_token,
        )

    def _wait_ack(self, seq: int, timeout: float) -> None:
        c = self._c
        end = time.monotonic() + timeout
        last = end + MAX_WORKING_S
        while c.ack_seq != seq:
            if procfs.start_time(self.pid) is None:
                raise ControlError(f"process {self.pid} ended before it answered")
            if os.fstat(self._fd).st_nlink == 0:  # replaced by a block of the new image's
                raise BlockReplaced(self._gone_why())
            left = end - time.monotonic()
            if left <= 0 and c.working and time.monotonic() < last:  # a dump of many stacks
                end = min(time.monotonic() + timeout, last)
                left = end - time.monotonic()
            if left <= 0:
                if not self.made_by_its_exe():  # an exec into a program without the sampler
                    raise BlockReplaced(self._gone_why())
                if c.thread_less:
                    raise ControlError(
                        f"process {self.pid} makes its control thread when asked, at its "
                        f"next allocation, and has not allocated within {timeout:g} s: ask "
                        "again once it works"
                    )
                stopped = procfs.why_stopped(self.pid)
                waited = timeout + MAX_WORKING_S if c.working else timeout
                raise ControlError(
                    f"{stopped}, then ask again"
                    if stopped
                    else f"process {self.pid} did not answer within {waited:g} s"
                )
            # Sleep on the reply word, waking now and then to see that the target lives.
            ts = ffi.new("struct timespec *", (0, int(min(left, 0.2) * 1e9)))
            self._futex(ffi.addressof(c, "ack_seq"), _FUTEX_WAIT, c.ack_seq, ts)

    @staticmethod
    def _futex(word: object, op: int, value: int, timeout: object = ffi.NULL) -> None:
        rc = _libc.syscall(
            ffi.cast("long", _SYS_FUTEX),
            ffi.cast("uint32_t *", word),
            ffi.cast("int", op),
            ffi.cast("uint32_t", value),
            ffi.cast("struct timespec *", timeout),
            ffi.NULL,
            ffi.cast("int", 0),
        )
        if rc < 0 and ffi.errno not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
            raise OSError(ffi.errno, os.strerror(ffi.errno))

    def close(self) -> None:
        ffi.release(self._c)
        self._map.close()
        os.close(self._fd)

    def __enter__(self) -> ControlBlock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ran_exec_message(pid: int) -> str:
    program = procfs.exe_path(pid) or "another program"
    return (
        f"process {pid} ran exec (it now runs {program}): the sampler and any window went "
        f"with the program it replaced; capture the new one with `mem_profiler -p {pid}`"
    )


def no_sampler_message(pid: int, command: str) -> str:
    if unloadable := unloadable_reason(program_kind(procfs.exe_file(pid))):
        return f"process {pid} {unloadable}"
    return (
        f"process {pid} does not have the sampler loaded: load it now with "
        f"`{command} -p {pid} --attach`, or start the program with "
        "`mem_profiler run --idle -- CMD` or `LD_PRELOAD=$(mem_profiler lib) CMD`"
    )


def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
