"""Loading libmemprof.so into a running process started without it
(`mem_profiler -p PID --attach`), with ptrace and no debugger.

All threads are stopped; one that is at a safe point (blocked in a system call, or
running outside the C library and the loader, so it holds none of their locks) is
made to call the C library's `dlopen(libmemprof.so, RTLD_NOW | RTLD_LOCAL)` on
its own stack, with a return address of 0 so that the return ends in a fault we
catch; its registers and stack are then put back as they were.  The other threads
run on during the call: one of them may hold a lock dlopen needs.  The library's
constructor registers the control block; the sampler redirects the GOT when a
window opens (sampler/hooks/got_hooks.c)."""

from __future__ import annotations

import errno
import os
import platform
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from mem_profiler.control import procfs
from mem_profiler.control.attach import ptrace
from mem_profiler.control.control_block import AttachError, remove_blocks_of_ended, user_name
from mem_profiler.core import progress
from mem_profiler.core.input_files import open_regular
from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.program_kind import program_kind, unloadable_reason

RTLD_NOW, RTLD_LOCAL, RTLD_DLOPEN = 2, 0, 0x80000000
_MEMORY_SYSCALLS = {9, 10, 11, 12, 25, 28}  # mmap mprotect munmap brk mremap madvise
_FUTEX = 202
_RESTARTING = {-4, -512, -513, -514, -516}  # -EINTR, -ERESTART*: blocked in a system call
# Code whose locks dlopen may take: a thread stopped inside it is not a safe point.
_LOCKING_CODE = re.compile(r"/(libc[.-]|ld-linux|ld64|libpthread|libdl)[^/]*$")
_MACHINES = {
    3: "i386",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "S/390",
    40: "ARM",
    62: "x86-64",
    183: "AArch64",
    243: "RISC-V",
}


class TargetEnded(AttachError):
    """The target ended while it was being injected."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"process {pid} ended during the injection")


def read_maps(pid: int) -> list[MemoryMapping]:
    """The target's memory map; AttachError when it cannot be read."""
    try:
        return procfs.memory_map(pid)
    except FileNotFoundError:
        raise AttachError(procfs.no_such_process(pid)) from None
    except PermissionError:
        raise AttachError(
            f"cannot read the memory map of process {pid}: attaching needs its owner or root"
        ) from None


# ---- refusals, each one sentence -----------------------------------------------------


def check_attachable(pid: int) -> None:
    """Raises AttachError when ptrace would be refused or the target cannot take the
    sampler: another user's process, yama's ptrace_scope, another architecture, a
    statically linked program."""
    owner = procfs.owner_uid(pid)
    if owner is None or procfs.start_time(pid) is None:
        raise AttachError(procfs.no_such_process(pid))
    if pid == os.getpid():
        raise AttachError("mem_profiler cannot attach to itself")
    privileged = procfs.has_cap_sys_ptrace()
    if owner != os.geteuid() and not privileged:
        raise AttachError(
            f"process {pid} belongs to {user_name(owner)}: attaching to another "
            "user's process needs root (CAP_SYS_PTRACE)"
        )
    scope = procfs.yama_ptrace_scope()
    if scope == 3:
        raise AttachError(
            "ptrace is switched off on this machine (kernel.yama.ptrace_scope = 3"
            " until reboot): start the program under the sampler instead, with"
            " `mem_profiler run --idle -- CMD`"
        )
    if scope == 2 and not privileged:
        raise AttachError(
            "kernel.yama.ptrace_scope = 2 lets only root attach to a process: "
            "run mem_profiler as root (CAP_SYS_PTRACE)"
        )
    if scope == 1 and not privileged and not _is_descendant(pid):
        raise AttachError(
            "kernel.yama.ptrace_scope = 1 lets a program attach only to its own "
            "children: run mem_profiler as root, or set "
            "`sysctl kernel.yama.ptrace_scope=0`"
        )
    tracer = procfs.tracer_pid(pid)
    if tracer:
        raise AttachError(
            f"process {pid} is being traced by process {tracer} (a debugger?): detach that first"
        )
    elsewhere = procfs.in_another_pid_namespace(pid)
    if elsewhere:  # the sampler would load, but name its block by its pid there
        raise AttachError(elsewhere)
    stopped = procfs.why_stopped(pid)
    if stopped:  # the sampler would load, but no window could open
        raise AttachError(f"{stopped} first")
    if platform.machine() != "x86_64":
        raise AttachError(
            f"attaching is implemented for x86-64 only, not {platform.machine()}: start the"
            " program with `mem_profiler run --idle -- CMD` and open windows with -p PID"
        )
    exe = procfs.exe_file(pid)
    try:
        with open_regular(exe, "a program", AttachError) as f:
            head = f.read(64)
        if len(head) < 20:
            raise AttachError("too short")
    except (OSError, AttachError):
        raise AttachError(f"cannot read the program of process {pid}") from None
    elf_class, machine = head[4], int.from_bytes(head[18:20], "little")
    if elf_class != 2 or machine != 62:
        name = _MACHINES.get(machine, f"machine {machine}")
        bits = "32-bit " if elf_class == 1 else ""
        raise AttachError(
            f"process {pid} is a {bits}{name} program: the sampler is built for "
            "64-bit x86-64 programs only"
        )
    unloadable = unloadable_reason(program_kind(exe))
    if unloadable and not any(_LOCKING_CODE.search(m.path) for m in read_maps(pid)):
        raise AttachError(f"process {pid} {unloadable}")


def _is_descendant(pid: int) -> bool:
    me = os.getpid()
    ancestor: int | None = pid
    while ancestor is not None and ancestor > 1:
        if ancestor == me:
            return True
        ancestor = procfs.parent_pid(ancestor)
    return False


# ---- where dlopen is in the target ----------------------------------------------------


@dataclass
class LoaderFunctions:
    dlopen: int
    dlerror: int | None
    mode_flags: int = 0  # __libc_dlopen_mode wants __RTLD_DLOPEN


def find_loader_functions(pid: int, maps: list[MemoryMapping]) -> LoaderFunctions:
    """dlopen and dlerror in the target: the C library's (glibc 2.34 and later), else
    libdl's, else the C library's internal __libc_dlopen_mode."""
    libraries: dict[str, int] = {}
    for m in maps:
        name = os.path.basename(m.path)
        if m.offset == 0 and m.path.startswith("/") and re.match(r"lib(c|dl)[.-]", name):
            libraries.setdefault(m.path, m.start)
    symbols = {path: _dynamic_symbols(pid, path, start) for path, start in libraries.items()}
    for wanted, error, flags in (
        ("dlopen", "dlerror", 0),
        ("__libc_dlopen_mode", None, RTLD_DLOPEN),
    ):
        for found in symbols.values():
            if wanted in found:
                return LoaderFunctions(found[wanted], found.get(error or ""), flags)
    raise AttachError(f"process {pid} has no dlopen in its C library: is it a glibc program?")


def _dynamic_symbols(pid: int, path: str, mapped_at: int) -> dict[str, int]:
    """{name: address in the target} of the loader functions a library defines."""
    try:
        # a map may name a FIFO in the library's place: never wait on it
        with open_regular(procfs.path_in_root(pid, path), "a library", AttachError) as f:
            elf = ELFFile(f)
            first = next(
                seg
                for seg in elf.iter_segments()
                if seg["p_type"] == "PT_LOAD" and seg["p_offset"] == 0
            )
            base = mapped_at - (first["p_vaddr"] & ~0xFFF)
            dynsym = elf.get_section_by_name(".dynsym")
            if not isinstance(dynsym, SymbolTableSection):  # none (or not a symbol table)
                return {}
            found = {}
            for name in ("dlopen", "dlerror", "__libc_dlopen_mode"):
                for sym in dynsym.get_symbol_by_name(name) or []:
                    if sym["st_value"] and sym["st_info"]["type"] == "STT_FUNC":
                        found[name] = base + sym["st_value"]
            return found
    except (OSError, ELFError, StopIteration, AttachError):
        return {}


# ---- the threads ----------------------------------------------------------------------


@dataclass
class _Threads:
    pid: int
    stopped: dict[int, int] = field(default_factory=dict)  # tid -> signal to deliver later

    def stop_all(self) -> None:
        """Seizes and stops every thread, again until no new one appeared meanwhile."""
        while True:
            try:
                tids = procfs.thread_ids(self.pid)
            except FileNotFoundError:
                raise TargetEnded(self.pid) from None
            new = tids - self.stopped.keys()
            if not new:
                return
            for tid in sorted(new):
                try:
                    ptrace.seize(tid)
                    ptrace.interrupt(tid)
                except OSError as err:
                    if err.errno == errno.ESRCH:
                        continue  # the thread ended
                    raise AttachError(
                        f"the kernel refused to let mem_profiler trace process "
                        f"{self.pid} ({err.strerror}): it may be traced already"
                        " (by a debugger?) or not dumpable"
                    ) from None
                stop = ptrace.wait(tid)
                if not stop.exited:
                    self.stopped[tid] = stop.signal if stop.delivers_signal else 0

    def resume_all(self) -> None:
        for tid in list(self.stopped):
            try:
                ptrace.cont(tid, self.stopped[tid])
                self.stopped[tid] = 0
            except OSError:
                del self.stopped[tid]

    def interrupt_all(self) -> None:
        for tid in list(self.stopped):
            try:
                ptrace.interrupt(tid)
            except OSError:
                del self.stopped[tid]
                continue
            stop = ptrace.wait(tid)
            if stop.exited:
                del self.stopped[tid]
            elif stop.delivers_signal:
                self.stopped[tid] = stop.signal

    def release(self, tid: int) -> None:
        ptrace.detach(tid, self.stopped.pop(tid, 0))

    def release_all(self) -> None:
        for tid in list(self.stopped):
            self.release(tid)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


UNSAFE = 9


def _safety(regs: ptrace.UserRegs, locking: list[MemoryMapping]) -> int:
    """0 for the best place to call dlopen from, higher for worse, UNSAFE where the thread
    may hold a lock of the allocator or the loader."""
    syscall, result = _signed(regs.orig_rax), _signed(regs.rax)
    if syscall >= 0 and result in _RESTARTING:
        if syscall in _MEMORY_SYSCALLS:
            return UNSAFE  # inside malloc, perhaps, holding an arena lock
        return 2 if syscall == _FUTEX else 0
    if any(m.start <= regs.rip < m.end for m in locking):
        return UNSAFE
    return 1


def _choose_thread(threads: _Threads, maps: list[MemoryMapping], attempts: int = 200) -> int:
    locking = [m for m in maps if m.executable and _LOCKING_CODE.search(m.path)]
    for _ in range(attempts):
        ranked = []
        for tid in threads.stopped:
            try:
                ranked.append((_safety(ptrace.get_regs(tid), locking), tid != threads.pid, tid))
            except OSError:
                continue
        if not ranked:
            raise TargetEnded(threads.pid)
        best = min(ranked)
        if best[0] < UNSAFE:
            return best[2]
        threads.resume_all()  # every thread in the C library: let them run a moment
        time.sleep(0.002)
        threads.interrupt_all()
        threads.stop_all()
    raise AttachError(
        f"every thread of process {threads.pid} stayed inside the C library or "
        "the loader for a second: try again"
    )


# ---- the call ---------------------------------------------------------------------------


class _RemoteCall:
    """Calls functions in one stopped thread of the target, then puts it back."""

    def __init__(self, pid: int, tid: int) -> None:
        self.pid, self.tid = pid, tid
        self.saved = ptrace.get_regs(tid)
        # Below the red zone and then some: nothing live is there.
        self.scratch_top = (self.saved.rsp - 1024) & ~0xF
        self.scratch_bottom = self.scratch_top - 8192
        self.scratch = ptrace.read_memory(tid, self.scratch_bottom, 8192)
        self.deferred: list[int] = []  # the program's signals that came during our calls

    def call(self, function: int, data: bytes = b"", rsi: int = 0, timeout: float = 60.0) -> int:
        regs = self.saved.copy()
        sp = self.scratch_top
        if data:
            sp = (sp - len(data) - 1) & ~0xF
            ptrace.write_memory(self.tid, sp, data + b"\0")
            regs.rdi = sp
        sp = (sp - 64) & ~0xF
        sp -= 8  # rsp = 8 mod 16 at a function's entry
        ptrace.write_memory(self.tid, sp, bytes(8))  # return address 0
        regs.rsp, regs.rip, regs.rsi = sp, function, rsi
        regs.rax = 0
        regs.orig_rax = (1 << 64) - 1  # no system call to restart on the way
        regs.eflags &= ~(1 << 10)  # the direction flag clear, as the ABI says
        ptrace.set_regs(self.tid, regs)
        ptrace.cont(self.tid)
        return self._wait_return(timeout)

    def _wait_return(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            stop = ptrace.wait(self.tid, block=False)
            if stop is None:
                if time.monotonic() > deadline:
                    ptrace.interrupt(self.tid)
                    ptrace.wait(self.tid)
                    raise AttachError(
                        f"dlopen did not return within {timeout:g} s in process "
                        f"{self.pid}: it was abandoned, and the process may hold "
                        "its loader lock from now on"
                    )
                time.sleep(0.0005)
                continue
            if stop.exited:
                raise TargetEnded(self.pid)
            if stop.signal == signal.SIGSEGV and stop.event == 0:
                regs = ptrace.get_regs(self.tid)
                if regs.rip == 0:
                    return regs.rax
                raise AttachError(
                    f"process {self.pid} faulted inside dlopen (at {regs.rip:#x})"
                    ": the sampler was not loaded"
                )
            if stop.delivers_signal:  # delivered once the thread is back in its own code
                self.deferred.append(stop.signal)
            ptrace.cont(self.tid)

    def restore(self) -> None:
        ptrace.write_memory(self.tid, self.scratch_bottom, self.scratch)
        ptrace.set_regs(self.tid, self.saved)

    def resend_deferred(self) -> None:
        for sig in self.deferred:
            ptrace.resend(self.pid, self.tid, sig)


def _gone(pid: int, wait: float) -> bool:
    """Whether pid has ended (a zombie counts), waiting up to `wait` for an exiting one."""
    end = time.monotonic() + wait
    while procfs.start_time(pid) is not None:
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True


def inject(pid: int, library: Path, timeout: float = 60.0) -> None:
    """Loads `library` into process `pid`; AttachError (one sentence) when it cannot."""
    check_attachable(pid)
    if not os.path.isfile(procfs.path_in_root(pid, library)):
        raise AttachError(f"process {pid} cannot see {library} (another mount namespace?)")
    maps = read_maps(pid)
    if any(os.path.basename(m.path) == library.name for m in maps):
        raise AttachError(
            f"process {pid} has the sampler loaded already but made no control "
            "block (was it started with MEMPROF_CONTROL=0?): it cannot be "
            "captured from outside; start it again without MEMPROF_CONTROL=0"
        )
    progress.stage(f"attaching to process {pid}: reading its loader")
    loader = find_loader_functions(pid, maps)
    threads = _Threads(pid)
    try:
        progress.stage(f"attaching to process {pid}: stopping its threads")
        threads.stop_all()
        progress.stage(f"attaching to process {pid}: loading the sampler")
        tid = _choose_thread(threads, maps)
        for other in [t for t in threads.stopped if t != tid]:
            threads.release(other)
        remote = _RemoteCall(pid, tid)
        try:
            handle = remote.call(
                loader.dlopen,
                os.fsencode(library),
                RTLD_NOW | RTLD_LOCAL | loader.mode_flags,
                timeout,
            )
            reason = ""
            if handle == 0 and loader.dlerror is not None:
                message = remote.call(loader.dlerror, timeout=timeout)
                reason = ptrace.read_string(tid, message) if message else ""
        finally:
            remote.restore()
        threads.release(tid)
    except (OSError, AttachError) as err:
        exiting = isinstance(err, TargetEnded) or getattr(err, "errno", None) == errno.ESRCH
        if _gone(pid, wait=2.0 if exiting else 0.0):
            remove_blocks_of_ended(pid)  # its constructor ran, then it died
            raise TargetEnded(pid) from None
        if isinstance(err, AttachError):
            raise
        raise AttachError(f"the injection into process {pid} failed: {err.strerror}") from None
    finally:
        threads.release_all()  # after an error: whatever is still stopped
    remote.resend_deferred()
    if handle == 0:
        raise AttachError(f"dlopen of the sampler failed in process {pid}: {reason or 'no reason'}")
