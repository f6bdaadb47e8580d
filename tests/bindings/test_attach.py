"""Attaching to a process started without the sampler (issue 8): ptrace injection,
GOT redirection while a window is open, every slot put back at detach."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection
from standins import truth
from standins.build import build_device_fixture, standin_env
from support.device import (
    assert_runtime_failures,
    assert_sites,
    other_functions,
    runtime_calls,
    table,
    wrapped,
)
from support.interpreters import DEBIAN_PYTHON
from support.nvidia_runtime import RUNTIMES, runtime_library
from support.paths import MEM_PROFILER
from support.processes import in_a_pid_namespace, wait_for
from support.profiling import capture_cli, report
from support.sampling_math import assert_estimate, relative_sd
from support.targets import attach_window
from support.terminal import Terminal

from mem_profiler.control import procfs
from mem_profiler.control.attach import ptrace
from mem_profiler.control.attach.inject import AttachError, check_attachable, read_maps
from mem_profiler.control.control_block import ControlBlock, segment_path
from mem_profiler.control.controller import attach, capture_window, detach, list_targets
from mem_profiler.control.settings import CaptureSettings
from mem_profiler.core import progress

MALLOC_FAMILY = {
    "malloc",
    "calloc",
    "realloc",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
}
SITES = {"site_small": (0, 256), "site_medium": (1, 4096), "site_large": (2, 16384)}
R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT = 6, 7
JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")  # Debian libjemalloc2


class Target:
    """attach_target, started without the sampler; its counters file holds the truth."""

    def __init__(
        self, exe: Path, folder: Path, preload: str | None = None, libraries: Path | None = None
    ) -> None:
        self.counters_path = folder / f"counters.{time.monotonic_ns()}"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MEMPROF_") and k != "LD_PRELOAD"
        }
        if preload:
            env["LD_PRELOAD"] = preload
        if libraries:
            env["LD_LIBRARY_PATH"] = str(libraries)
        self.proc = subprocess.Popen(
            [str(exe), str(self.counters_path)],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.pid = int(self.proc.stdout.readline().split()[1])

    def counters(self) -> tuple[int, ...]:
        return struct.unpack("<4Q", self.counters_path.read_bytes()[:32])

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def quit(self) -> str:
        answer = self.ask("quit")
        self.proc.wait(timeout=10)
        return answer

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        Path(segment_path(self.pid)).unlink(missing_ok=True)  # killed: no exit handler ran


@pytest.fixture
def target(build_fixture, tmp_path):
    started = []

    def start(preload: str | None = None) -> Target:
        started.append(Target(build_fixture("attach_target"), tmp_path, preload))
        return started[-1]

    yield start
    for t in started:
        t.kill()


# --- the GOT slots of the malloc family, read from outside -----------------------------


def malloc_slots(pid: int) -> dict[str, int]:
    """{"object:name@offset": the value of the slot} for the program and libc, read
    through /proc/PID/mem; the slot addresses come from the files' relocations."""
    objects = {
        m.path: m.start
        for m in reversed(read_maps(pid))
        if m.offset == 0
        and (m.path == os.readlink(f"/proc/{pid}/exe") or re.search(r"/libc\.so", m.path))
    }
    slots = {}
    with open(f"/proc/{pid}/mem", "rb") as mem:
        for path, start in objects.items():
            with open(path, "rb") as f:
                elf = ELFFile(f)
                first = next(s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD")
                base = start - (first["p_vaddr"] & ~0xFFF)
                for section in elf.iter_sections():
                    if not isinstance(section, RelocationSection):
                        continue
                    symbols = elf.get_section(section["sh_link"])
                    assert isinstance(symbols, SymbolTableSection)
                    for rel in section.iter_relocations():
                        name = symbols.get_symbol(rel["r_info_sym"]).name
                        if rel["r_info_type"] in (R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT) and (
                            name in MALLOC_FAMILY
                        ):
                            mem.seek(base + rel["r_offset"])
                            value = struct.unpack("<Q", mem.read(8))[0]
                            slots[f"{os.path.basename(path)}:{name}@{rel['r_offset']:#x}"] = value
    return slots


def sampler_ranges(pid: int) -> list[tuple[int, int]]:
    return [(m.start, m.end) for m in read_maps(pid) if m.path.endswith("/libmemprof.so")]


def leak_signature(pid: int) -> tuple[int, int, int]:
    """(threads, mappings, open files) of a process."""
    return (
        len(os.listdir(f"/proc/{pid}/task")),
        len(read_maps(pid)),
        len(os.listdir(f"/proc/{pid}/fd")),
    )


def first_change(maps: list[str]) -> str:
    """The lines of /proc/PID/maps that changed between the first cycle and the first
    cycle whose map differs, to name what a failing cycle left behind."""
    changed = next((m for m in maps[1:] if m.count("\n") != maps[0].count("\n")), maps[0])
    diff = difflib.unified_diff(maps[0].splitlines(), changed.splitlines(), n=0, lineterm="")
    return "\n".join(diff)


# --- attach, a window, detach ---------------------------------------------------------


@pytest.mark.parametrize("allocator", ["glibc", "jemalloc"])
def test_attach_capture_detach(target, build_fixture, tmp_path, allocator):
    # With jemalloc preloaded, the hooks must forward to jemalloc, which made the blocks
    # that the program frees; glibc's free would crash it.
    t = target(str(JEMALLOC) if allocator == "jemalloc" else None)
    exe = build_fixture("attach_target")
    expected_check = t.ask("check")
    assert t.ask("hold") == "hold"  # blocks from before the attach, freed inside the window
    time.sleep(0.2)
    before = malloc_slots(t.pid)
    assert {k.split("@")[0] for k in before} >= {
        "attach_target:malloc",
        "attach_target:free",
        "libc.so.6:malloc",
        "libc.so.6:free",
    }

    attach(t.pid)
    assert sampler_ranges(t.pid) and malloc_slots(t.pid) == before  # idle: nothing changed
    # The threads allocate only inside the window (from its first tick to the tick that
    # finds they counted enough for the ±5% bound), so the counters give its truth to
    # the byte; that tick then ends the window as Ctrl-C would.
    assert t.ask("pause") == "pause"
    c0 = t.counters()
    c1: list[int] = []
    during: dict[str, int] = {}

    def enough(counters: tuple[int, ...]) -> bool:
        blocks = [((counters[i] - c0[i]) // size, size) for i, size in SITES.values()]
        return all(n and 5 * relative_sd(n, size, 1024) <= 0.05 for n, size in blocks)

    def at_each_tick(elapsed, status):
        if not during:
            during.update(malloc_slots(t.pid))
            during["redirected"] = status.redirected_slots
            assert t.ask("release") == "release" and t.ask("resume") == "resume"
        elif not c1 and enough(t.counters()):
            assert t.ask("pause") == "pause"
            c1.extend(t.counters())
            os.kill(os.getpid(), signal.SIGINT)

    result = capture_window(
        t.pid,
        120,
        CaptureSettings(rate=1024, depth=64, prefix=str(tmp_path / "att_")),
        progress=at_each_tick,
        tick=0.25,
    )
    assert c1 and t.ask("resume") == "resume"

    # during the window every malloc-family slot led into the sampler; after it, none
    ours = sampler_ranges(t.pid)
    assert during.pop("redirected") >= len(before)
    assert during.keys() == before.keys()
    assert all(any(s <= v < e for s, e in ours) for v in during.values()), during
    assert malloc_slots(t.pid) == before
    assert result.status.injected and result.status.redirected_slots == 0

    # the estimates match the bytes the sites counted (cum: churn, below them, allocates)
    (heap,) = result.paths
    table = report(Path(heap), exe, "alloc_space")
    for site, (index, size) in SITES.items():
        counted = c1[index] - c0[index]
        assert_estimate(table[site][1], counted, relative_sd(counted // size, size, 1024), 0.05)
    # main allocated nothing in the window: it freed the blocks it held from before the
    # attach, which must be neither counted nor harmful
    assert "main" not in table

    # the process goes on as before: same answers, no corrupted block
    assert t.ask("check") == expected_check
    assert c1[3] == 0 and t.quit() == "quit 0"


def test_signals_during_the_injection_all_arrive(target):
    """Real-time signals queue, so each one sent must be handled exactly once: those
    that reach a thread while it is stopped or calling dlopen for us are delivered after."""
    t = target()
    attached = threading.Event()
    sent: list[int] = []

    def send():  # from before the injection starts until after it ends
        while not attached.is_set() or len(sent) < 100:
            os.kill(t.pid, signal.SIGRTMIN + 1)
            sent.append(1)
            time.sleep(0.0002)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(0.01)
        attach(t.pid)
    finally:
        attached.set()
        sender.join()
    deadline = time.monotonic() + 10
    while (answer := t.ask("signals")) != f"signals {len(sent)}" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer == f"signals {len(sent)}"
    assert t.quit() == "quit 0"


def test_attaching_shows_its_stages_on_a_terminal(target, monkeypatch):
    """An attach that takes more than the progress line's second (here: held while its
    threads are stopped until the line is drawn) says what it is doing, then takes the
    line off before the command's own sentence."""
    from mem_profiler.cmd.mem_profiler import load_sampler
    from mem_profiler.control.attach import inject

    t = target()
    terminal = Terminal()
    monkeypatch.setattr(progress, "AFTER_S", 0.0)
    monkeypatch.setattr(progress, "EVERY_S", 0.01)
    monkeypatch.setattr(sys, "stderr", terminal)
    stop_all = inject._Threads.stop_all

    def slow_stop_all(threads):
        stop_all(threads)
        wait_for(lambda: "stopping its threads" in terminal.sent(), what="the attach's stage")

    monkeypatch.setattr(inject._Threads, "stop_all", slow_stop_all)
    load_sampler(t.pid)
    sent = terminal.sent()
    assert f"\rmem_profiler: attaching to process {t.pid}: stopping its threads... " in sent
    assert sent.endswith(f"\r\x1b[Kmem_profiler: loaded the sampler into process {t.pid}\n")
    assert t.quit() == "quit 0"


def test_ten_attach_detach_cycles_leak_nothing(target, tmp_path):
    t = target()
    signatures, maps = [], []
    for cycle in range(10):
        prefix = str(tmp_path / f"c{cycle}_")
        capture = capture_cli(
            t.pid, "--attach", "-s", "0.1", "-c", "65536", "-o", prefix, timeout=60
        )
        assert capture.returncode == 0, capture.stderr
        assert ("loaded the sampler" in capture.stderr) == (cycle == 0)  # injected once
        assert capture.stdout.startswith("succeeded in collecting memory data!")
        released = subprocess.run(
            [MEM_PROFILER, "detach", "-p", str(t.pid)], capture_output=True, text=True, timeout=60
        )
        assert released.returncode == 0, released.stderr
        assert released.stdout == (  # its window closed as the capture ended
            f"detached from process {t.pid}: nothing to undo; the sampler stays loaded, idle,"
            f" until `mem_profiler -p {t.pid}` captures again\n"
        )
        assert [x.state for x in list_targets() if x.pid == t.pid] == ["idle (attached)"]
        signatures.append(leak_signature(t.pid))
        maps.append(Path(f"/proc/{t.pid}/maps").read_text())
    # threads, mappings, files
    assert len(set(signatures)) == 1, f"{signatures}\n{first_change(maps)}"
    assert t.quit() == "quit 0"


def test_library_dlopened_after_the_attach_is_seen(build_fixture, tmp_path):
    # The program finds the library by its bare name in its own RUNPATH: dlopen through
    # the redirected slot must still look there, as the program's call.
    exe = build_fixture(
        "attach_target",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/runpath",
        output="attach_target_runpath",
    )
    (exe.parent / "runpath").mkdir(exist_ok=True)
    shutil.copy(build_fixture("plugin", shared=True), exe.parent / "runpath" / "libplugin.so")
    t = Target(exe, tmp_path)
    try:
        dlopen_after_attach(t, exe, tmp_path)
    finally:
        t.kill()


def dlopen_after_attach(t: Target, exe: Path, tmp_path: Path) -> None:
    controller = attach_window(t.pid, "-s", "1.5", "-o", tmp_path / "dl_")
    assert t.ask("dlopen libplugin.so") == "dlopen 100"
    out, err = controller.communicate(timeout=60)
    assert controller.returncode == 0, err
    heap = Path(out.split()[-1])
    kept = report(heap, exe, "inuse_space")
    plugin_alloc = next(v for k, v in kept.items() if k.startswith("plugin_alloc"))
    assert_estimate(plugin_alloc[0], 100 * 5000, relative_sd(100, 5000, 1024), 0.05)
    assert t.quit() == "quit 0"


GROWING_PYTHON = """import sys, time
def grow(kept):
    kept.append(bytearray(100000))
kept = []
print("ready", flush=True)
while sys.stdin.readline().strip() == "grow":
    grow(kept)
    print(len(kept), flush=True)
# what grow() keeps (PYTHONMALLOC=malloc: every object through malloc): the bytearrays,
# each an object and its buffer, and the list's array of pointers
print(sum(map(sys.getsizeof, kept)) + sys.getsizeof(kept) - sys.getsizeof([]), flush=True)
"""


@pytest.mark.skipif(not DEBIAN_PYTHON.is_file(), reason="Debian's python3.11 is not installed")
def test_attach_to_a_non_pie_python_whose_malloc_is_its_plt_stub(tmp_path):
    # Debian's python3.11 is not PIE and takes malloc's address, so its undefined
    # `malloc` has a value (its PLT stub) and dlsym(RTLD_DEFAULT) answers with it: a
    # hook forwarding there came back to itself through the redirected GOT and crashed
    # the interpreter.
    script = tmp_path / "grow.py"
    script.write_text(GROWING_PYTHON)
    proc = subprocess.Popen(
        [DEBIAN_PYTHON, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONMALLOC": "malloc"},
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
        controller = attach_window(proc.pid, "-c", "1", "-o", tmp_path / "py_")
        for n in range(1, 31):
            proc.stdin.write("grow\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == f"{n}\n"
        controller.send_signal(signal.SIGINT)
        out, err = controller.communicate(timeout=60)
        assert controller.returncode == 0, err
        proc.stdin.close()
        kept = int(proc.stdout.readline())
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    # every bytearray of the window, exactly (rate 1), under the script's own function
    rows = report(Path(out.split()[-1]), DEBIAN_PYTHON)
    assert rows["grow (grow.py)"][1] == kept


def test_target_killed_during_the_injection(target, tmp_path):
    for attempt in range(20):
        # A prefix per attempt: an attempt that missed the injection (the window opened
        # and was written before the kill, on a loaded machine) leaves its own file.
        prefix = f"k{attempt}_"
        t = target()
        controller = subprocess.Popen(
            [MEM_PROFILER, "-p", str(t.pid), "--attach", "-s", "1", "-o", str(tmp_path / prefix)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        status = Path(f"/proc/{t.pid}/status")
        while controller.poll() is None and "TracerPid:\t0\n" in status.read_text():
            pass
        caught = controller.poll() is None
        t.proc.kill()
        t.proc.wait(timeout=10)
        out, err = controller.communicate(timeout=60)
        if caught and "during the injection" in err:
            break
    else:
        pytest.fail("the target was never killed while the injection ran")
    assert controller.returncode == 1 and out == ""
    assert err.strip() == f"mem_profiler: process {t.pid} ended during the injection"
    assert not os.path.exists(segment_path(t.pid))
    assert not list(tmp_path.glob(f"{prefix}*"))


# --- refusals -------------------------------------------------------------------------


def refusal(*args: str) -> tuple[int, str]:
    proc = subprocess.run([MEM_PROFILER, *args], capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stderr.strip().removeprefix("mem_profiler: ")


def attach_refusal(pid: int) -> str:
    """The sentence `mem_profiler -p PID --attach -s 1` refuses with; it must exit 1."""
    code, message = refusal("-p", str(pid), "--attach", "-s", "1")
    assert code == 1, message
    return message


def test_statically_linked_target_is_refused(build_fixture, tmp_path):
    exe = build_fixture("attach_target", "-static", output="attach_target_static")
    t = Target(exe, tmp_path)
    try:
        assert attach_refusal(t.pid) == (
            f"process {t.pid} is statically linked: it has no dynamic loader to "
            "load the sampler with; link it dynamically to profile it"
        )
        assert t.quit() == "quit 0"
    finally:
        t.kill()


def test_a_fifo_named_as_its_c_library_is_refused_without_waiting(build_fixture, tmp_path):
    """The target's C library, a copy, deleted and its name in the map taken by a FIFO:
    reading it must not wait for a writer that never comes."""
    libraries = tmp_path / "libraries"
    libraries.mkdir()
    shutil.copy(os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"), libraries / "libc.so.6")
    t = Target(build_fixture("attach_target"), tmp_path, libraries=libraries)
    try:
        (libraries / "libc.so.6").unlink()
        os.mkfifo(libraries / "libc.so.6 (deleted)")
        assert any(m.path == f"{libraries}/libc.so.6 (deleted)" for m in read_maps(t.pid)), (
            "the target did not load the copy"
        )
        assert attach_refusal(t.pid) == (
            f"process {t.pid} has no dlopen in its C library: is it a glibc program?"
        )
        assert t.quit() == "quit 0"
    finally:
        t.kill()


def i386_pause_program(path: Path) -> Path:
    """A 32-bit x86 program of 100-odd bytes that waits in pause() forever."""
    code = bytes([0xB8, 29, 0, 0, 0, 0xCD, 0x80, 0xEB, 0xF7])  # mov eax,29; int 0x80; jmp
    entry = 0x08048000 + 52 + 32
    header = struct.pack(
        "<4sBBBB8xHHIIIIIHHHHHH",
        b"\x7fELF",
        1,
        1,
        1,
        0,
        2,
        3,
        1,
        entry,
        52,
        0,
        0,
        52,
        32,
        1,
        0,
        0,
        0,
    )
    program = struct.pack(
        "<IIIIIIII",
        1,
        0,
        0x08048000,
        0x08048000,
        52 + 32 + len(code),
        52 + 32 + len(code),
        5,
        0x1000,
    )
    path.write_bytes(header + program + code)
    path.chmod(0o755)
    return path


def test_program_of_another_architecture_is_refused(tmp_path):
    try:
        proc = subprocess.Popen([str(i386_pause_program(tmp_path / "i386_pause"))])
    except OSError as err:
        pytest.skip(f"this kernel runs no 32-bit x86 programs: {err}")
    try:
        time.sleep(0.2)
        if proc.poll() is not None:
            pytest.skip("this kernel runs no 32-bit x86 programs")
        assert attach_refusal(proc.pid) == (
            f"process {proc.pid} is a 32-bit i386 program: the sampler is built "
            "for 64-bit x86-64 programs only"
        )
    finally:
        proc.kill()
        proc.wait()


def test_another_users_process_without_cap_sys_ptrace_is_refused():
    # root without CAP_SYS_PTRACE (out of its bounding set) against a process of nobody's
    nobody = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "30"]
    )
    try:
        time.sleep(0.1)
        proc = subprocess.run(
            [
                "setpriv",
                "--bounding-set=-sys_ptrace",
                "--inh-caps=-sys_ptrace",
                MEM_PROFILER,
                "-p",
                str(nobody.pid),
                "--attach",
                "-s",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1
        assert proc.stderr.strip() == (
            f"mem_profiler: process {nobody.pid} belongs to nobody: attaching to another "
            "user's process needs root (CAP_SYS_PTRACE)"
        )
    finally:
        nobody.kill()
        nobody.wait()


@pytest.mark.parametrize(
    "scope, privileged, message",
    [
        (
            3,
            True,
            "ptrace is switched off on this machine (kernel.yama.ptrace_scope = 3 until "
            "reboot): start the program under the sampler instead, with "
            "`mem_profiler run --idle -- CMD`",
        ),
        (
            2,
            False,
            "kernel.yama.ptrace_scope = 2 lets only root attach to a process: run "
            "mem_profiler as root (CAP_SYS_PTRACE)",
        ),
        (
            1,
            False,
            "kernel.yama.ptrace_scope = 1 lets a program attach only to its own children: "
            "run mem_profiler as root, or set `sysctl kernel.yama.ptrace_scope=0`",
        ),
    ],
)
def test_yama_ptrace_scope_refusals(monkeypatch, scope, privileged, message):
    # This machine's kernel may have no yama: its setting is read through procfs.
    monkeypatch.setattr(procfs, "yama_ptrace_scope", lambda: scope)
    monkeypatch.setattr(procfs, "has_cap_sys_ptrace", lambda: privileged)
    with pytest.raises(AttachError) as refused:
        check_attachable(os.getppid())  # ours, alive, and not our descendant
    assert str(refused.value) == message


def test_a_process_traced_already_is_refused(target):
    t = target()
    ptrace.seize(t.pid)  # this test is the other tracer
    try:
        assert attach_refusal(t.pid) == (
            f"process {t.pid} is being traced by process {os.getpid()} (a "
            "debugger?): detach that first"
        )
    finally:
        ptrace.interrupt(t.pid)  # a tracee is let go from a stop
        ptrace.wait(t.pid)
        ptrace.detach(t.pid)
    assert "TracerPid:\t0\n" in Path(f"/proc/{t.pid}/status").read_text()
    assert t.quit() == "quit 0"


def test_a_stopped_process_is_refused_before_anything_is_loaded(target):
    """Loaded into a process stopped by Ctrl-Z, the sampler could open no window."""
    t = target()
    os.kill(t.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: procfs.why_stopped(t.pid), what="the stop")
        assert attach_refusal(t.pid) == (
            f"process {t.pid} is stopped (Ctrl-Z or SIGSTOP): continue it with "
            f"`kill -CONT {t.pid}` first"
        )
        assert sampler_ranges(t.pid) == []
    finally:
        os.kill(t.pid, signal.SIGCONT)
    assert t.quit() == "quit 0"


def test_a_process_in_another_pid_namespace_is_refused_before_anything_is_loaded(
    build_fixture,
):
    """Loaded there, the sampler would name its block by its pid in that namespace,
    where no controller of ours looks."""
    exe = build_fixture("endings")
    proc, pid = in_a_pid_namespace([str(exe), "wait_stdin", "600000"], ready="ready")
    try:
        assert attach_refusal(pid) == (
            f"process {pid} runs in another PID namespace (a container?), as process 1 "
            f"there: capture it from inside, e.g. `nsenter --target {pid} --all "
            "mem_profiler -p 1`, with a mem_profiler installed in it"
        )
        assert sampler_ranges(pid) == []
    finally:
        os.kill(pid, signal.SIGKILL)  # process 1 there: SIGKILL alone ends it
        proc.wait()


def test_no_process_and_ourselves_are_refused():
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(AttachError, match=f"^{re.escape(procfs.no_such_process(gone.pid))}$"):
        check_attachable(gone.pid)
    with pytest.raises(AttachError, match="^mem_profiler cannot attach to itself$"):
        check_attachable(os.getpid())


def test_detach_of_a_process_without_the_sampler(target):
    t = target()
    code, message = refusal("detach", "-p", str(t.pid))
    assert code == 1 and message.startswith(f"process {t.pid} does not have the sampler loaded")
    assert t.quit() == "quit 0"


def test_detach_says_what_it_undid(target, tmp_path):
    """The controller that opened a window is killed; detach closes the window and says
    so, and that it put back the calls the sampler had redirected, as many as the block
    counted, none left."""
    t = target()
    controller = attach_window(t.pid, "-s", "600", "-o", tmp_path / "d_")
    controller.kill()
    controller.communicate()
    with ControlBlock.open(t.pid) as block:
        redirected = block.status().redirected_slots
    assert redirected > 0
    released = subprocess.run(
        [MEM_PROFILER, "detach", "-p", str(t.pid)], capture_output=True, text=True, timeout=60
    )
    assert released.returncode == 0, released.stderr
    assert released.stdout == (
        f"detached from process {t.pid}: closed its window and put back the {redirected}"
        " calls the sampler had redirected to itself; the sampler stays loaded, idle, until"
        f" `mem_profiler -p {t.pid}` captures again\n"
    )
    # listed as idle (attached), every column where its heading is
    listing = subprocess.run([MEM_PROFILER, "list"], capture_output=True, text=True).stdout
    head, *rows = listing.splitlines()
    (row,) = [r for r in rows if r.split()[0] == str(t.pid)]
    assert row[head.index("STATE") :].startswith("idle (attached)  ")
    assert row[head.index("COMMAND") - 2 : head.index("COMMAND")] == "  "
    assert row[head.index("COMMAND")] != " "
    assert t.quit() == "quit 0"


def test_detach_with_no_window_open_writes_nothing(target):
    t = target()
    attach(t.pid)
    before, status, files = detach(t.pid)
    assert status.injected and status.redirected_slots == 0 and files == []
    assert t.quit() == "quit 0"


# --- device heaps in an attached process ------------------------------------------------


def unprofiled_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("MEMPROF_") and k != "LD_PRELOAD"}


def test_device_heaps_of_an_attached_process(standin_dir, tmp_path):
    """The CUDA stand-ins' every path, in a process that loaded the framework (and
    through it the runtime) before the attach: exact at --device-rate 1."""
    exe = build_device_fixture("device_cuda", standin_dir)
    env = unprofiled_env(standin_env(standin_dir))
    plain = subprocess.run([exe, "local"], env=env, capture_output=True, text=True, check=True)
    output, heaps = run_in_a_window(
        exe, ["local", "wait"], env, ["mode=local\n", "loaded\n"], tmp_path / "dev_"
    )
    assert output == plain.stdout.split("\n", 1)[1]  # all but its first line
    assert {"host", "cuda", "cuda_host"} <= set(heaps)
    assert_sites(heaps, exe, truth.SITES["device_cuda"])


def run_in_a_window(
    exe: Path, args: list[str], env: dict[str, str], ready: list[str], prefix: Path
) -> tuple[str, dict[str, Path]]:
    """Starts exe (its last argument "wait"), reads its `ready` lines, attaches, lets it
    go on in a window and waits for it; its output after `ready` and the files."""
    proc = subprocess.Popen(
        [str(exe), *args], env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    try:
        assert [stdout.readline() for _ in ready] == ready
        attach(proc.pid)
        output: list[str] = []

        def run_the_sites(elapsed, status):
            if not output:
                stdin.write("go\n")
                stdin.flush()
                while not output or not output[-1].startswith("checksum="):
                    output.append(stdout.readline())

        result = capture_window(
            proc.pid,
            1.0,
            CaptureSettings(rate=1024, depth=64, prefix=str(prefix)),
            progress=run_the_sites,
        )
        stdin.write("exit\n")
        stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        Path(segment_path(proc.pid)).unlink(missing_ok=True)
    heaps = {}
    for f in result.paths:
        m = re.search(r"\.\d{4}(?:\.(\w+))?\.heap$", f)
        assert m is not None, f
        heaps[m[1] or "host"] = Path(f)
    return "".join(output), heaps


@pytest.mark.parametrize("version", list(RUNTIMES))
def test_nvidia_runtime_in_an_attached_process(standin_dir, tmp_path, version):
    """NVIDIA's runtime started before the attach (tests/sampler/test_cuda_runtimes.py): its
    table keeps the driver's own functions, fetched before (as docs/attach.md says), but
    every runtime call and every driver-API allocation of the window is seen."""
    exe = build_device_fixture("device_cuda_api", standin_dir)
    lib = str(runtime_library(version))
    env = unprofiled_env(standin_env(standin_dir))
    plain = subprocess.run([exe, lib], env=env, capture_output=True, text=True, check=True)
    output, heaps = run_in_a_window(
        exe, [lib, "wait"], env, ["start error=801\n", "started\n"], tmp_path / "rt_"
    )
    # (the runtime's GOT slots of malloc & co. hold hooks in the window: table lines of their own)
    assert re.sub(r"^table .*\n", "", output, flags=re.M) == re.sub(
        r"^table .*\n", "", plain.stdout.split("\n", 1)[1], flags=re.M
    )
    assert table(output) == {"libcuda.so.1": wrapped(version) | other_functions(version)}
    assert_runtime_failures(heaps, exe, runtime_calls(output))
    assert_sites(heaps, exe, truth.SITES["device_cuda_api"])


@pytest.mark.parametrize("answer", ["n", "y"])
def test_without_attach_a_terminal_is_asked(target, tmp_path, answer):
    t = target()
    main, terminal = os.openpty()  # stdin of mem_profiler: a terminal
    try:
        proc = subprocess.Popen(
            [MEM_PROFILER, "-p", str(t.pid), "-s", "0.2", "-o", str(tmp_path / "ask_")],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(main, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(main)
        os.close(terminal)
    assert f"process {t.pid} was started without the sampler: load it now" in err
    if answer == "n":
        assert proc.returncode == 1 and not sampler_ranges(t.pid)
        assert err.rstrip().endswith(
            f"`mem_profiler -p {t.pid} --attach`, or start the program "
            "with `mem_profiler run --idle -- CMD` or "
            "`LD_PRELOAD=$(mem_profiler lib) CMD`"
        )
    else:
        assert proc.returncode == 0 and sampler_ranges(t.pid), err
        assert out.startswith("succeeded in collecting memory data!")
    assert t.quit() == "quit 0"


def test_controller_killed_the_window_closes_at_its_deadline_and_slots_come_back(target, tmp_path):
    t = target()
    time.sleep(0.1)
    before = malloc_slots(t.pid)
    deadline = time.monotonic() + 30
    controller = attach_window(t.pid, "-s", "0.5", "-o", tmp_path / "dead_")
    assert malloc_slots(t.pid) != before
    controller.kill()
    controller.wait()
    # the window's deadline (0.5 s and the grace) closes it in the target itself
    while not list(tmp_path.glob(f"dead_{t.pid}.0001.heap")):
        assert time.monotonic() < deadline, "the window was never closed"
        time.sleep(0.05)
    assert malloc_slots(t.pid) == before
    assert t.quit() == "quit 0"


def test_attach_when_every_thread_is_busy_allocating(build_fixture, tmp_path):
    exe = build_fixture("attach_busy")
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        pid = int(proc.stdout.readline().split()[1])
        for _ in range(3):
            capture = capture_cli(
                pid, "--attach", "-s", "0.3", "-c", "65536", "-o", tmp_path / "busy_", timeout=60
            )
            assert capture.returncode == 0, capture.stderr
            heap = Path(capture.stdout.split()[-1])
            assert report(heap, exe, "alloc_space")["busy_site"][1] > 0
            assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
        Path(segment_path(proc.pid)).unlink(missing_ok=True)
