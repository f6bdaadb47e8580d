"""The few ptrace(2) requests the injection needs (x86-64), through ctypes.

Threads are attached with PTRACE_SEIZE and stopped with PTRACE_INTERRUPT, so
no signal is sent to the process; memory is read and written through
/proc/TID/mem of a stopped thread, which the tracer may do."""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from typing import Literal, overload

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

PTRACE_CONT, PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_DETACH = 7, 12, 13, 17
PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4206, 0x4207
PTRACE_EVENT_STOP = 128
WALL = 0x40000000  # __WALL: wait for threads too
_SYS_TGKILL = 234


class UserRegs(ctypes.Structure):
    """struct user_regs_struct of x86-64."""

    _fields_ = [
        (name, ctypes.c_ulonglong)
        for name in (
            "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags"
            " rsp ss"
            " fs_base gs_base ds es fs gs"
        ).split()
    ]

    def copy(self) -> UserRegs:
        clone = UserRegs()
        ctypes.pointer(clone)[0] = self
        return clone


def _ptrace(request: int, tid: int, addr: int = 0, data: int | ctypes.c_void_p = 0) -> None:
    if _libc.ptrace(request, tid, ctypes.c_void_p(addr), data) == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass
class Stop:
    """What waitpid said of a traced thread."""

    exited: bool  # the thread (or the whole process) is gone
    signal: int = 0  # the signal it stopped with (SIGTRAP for an interrupt)
    event: int = 0  # PTRACE_EVENT_* of the stop

    @property
    def delivers_signal(self) -> bool:
        """A signal on its way to the thread (not our interrupt, not a group stop)."""
        return not self.exited and self.event == 0 and self.signal != 0


@overload
def wait(tid: int, block: Literal[True] = True) -> Stop: ...
@overload
def wait(tid: int, block: bool) -> Stop | None: ...


def wait(tid: int, block: bool = True) -> Stop | None:
    """The next stop of a traced thread; None when not blocking and it has not stopped."""
    while True:
        try:
            got, status = os.waitpid(tid, WALL | (0 if block else os.WNOHANG))
        except ChildProcessError:
            return Stop(exited=True)
        except InterruptedError:
            continue
        if got == 0:
            return None
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return Stop(exited=True)
        return Stop(exited=False, signal=os.WSTOPSIG(status), event=status >> 16)


def seize(tid: int) -> None:
    _ptrace(PTRACE_SEIZE, tid)


def interrupt(tid: int) -> None:
    _ptrace(PTRACE_INTERRUPT, tid)


def get_regs(tid: int) -> UserRegs:
    regs = UserRegs()
    _ptrace(PTRACE_GETREGS, tid, 0, ctypes.cast(ctypes.pointer(regs), ctypes.c_void_p))
    return regs


def set_regs(tid: int, regs: UserRegs) -> None:
    _ptrace(PTRACE_SETREGS, tid, 0, ctypes.cast(ctypes.pointer(regs), ctypes.c_void_p))


def cont(tid: int, sig: int = 0) -> None:
    _ptrace(PTRACE_CONT, tid, 0, sig)


def detach(tid: int, sig: int = 0) -> None:
    """Lets the thread go (with `sig` delivered if non-zero); quiet if it is gone."""
    try:
        _ptrace(PTRACE_DETACH, tid, 0, sig)
    except OSError as err:
        if err.errno != errno.ESRCH:
            raise


def read_memory(tid: int, address: int, size: int) -> bytes:
    """Reads through a thread that runs (the main thread's /proc/<tid>/mem is empty once
    it has called pthread_exit)."""
    with open(f"/proc/{tid}/mem", "rb", buffering=0) as mem:
        return os.pread(mem.fileno(), size, address)


def write_memory(tid: int, address: int, data: bytes) -> None:
    with open(f"/proc/{tid}/mem", "r+b", buffering=0) as mem:
        if os.pwrite(mem.fileno(), data, address) != len(data):
            raise OSError(errno.EIO, f"short write at {address:#x}")


def read_string(tid: int, address: int, limit: int = 4096) -> str:
    data = read_memory(tid, address, limit)
    return data.split(b"\0", 1)[0].decode(errors="replace")


def resend(pid: int, tid: int, sig: int) -> None:
    """Delivers a signal that arrived while the thread ran our call, once it is free."""
    _libc.syscall(_SYS_TGKILL, pid, tid, sig)
