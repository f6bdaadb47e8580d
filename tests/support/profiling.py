"""Programs run under the real sampler through the installed command line
(`mem_profiler run`, `mem_profiler gate`), windows of running processes taken through
it (`mem_profiler -p`), and the profiles they write read through the real parser
pipeline, in this process or through the installed mem_parser."""

from __future__ import annotations

import os
import pwd
import re
import selectors
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from mem_profiler.control.controller import list_targets
from mem_profiler.parser.model.aggregate import aggregate
from mem_profiler.parser.read.heap_file import read_heap
from mem_profiler.parser.symbols.symbolize import symbolize
from support.paths import MEM_PARSER, MEM_PROFILER
from support.processes import wait_for

SITES_EXACT = (1000, 4000, 10)  # site_pages, site_small, site_transient blocks at -c 1


def profile_run(
    argv: Sequence[str | Path | int],
    prefix: Path,
    rate: int = 1024,
    *extra: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess, list[Path]]:
    """Run argv under `mem_profiler run`; returns the process and the .heap files written."""
    cmd = [MEM_PROFILER, "run", "-c", str(rate), "-o", str(prefix), *extra, "--", *map(str, argv)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    written = [
        Path(line.split("wrote ", 1)[1])
        for line in proc.stderr.splitlines()
        if line.startswith("mem_profiler: wrote ")
    ]
    return proc, written


def one_heap(proc: subprocess.CompletedProcess, files: list[Path]) -> Path:
    """The one .heap file of a run that succeeded."""
    assert proc.returncode == 0, proc.stderr
    assert len(files) == 1, proc.stderr
    return files[0]


def capture_cli(pid: int, *args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """`mem_profiler -p PID ARGS`: a window of a running process, as a user takes it."""
    return subprocess.run(
        [MEM_PROFILER, "-p", str(pid), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def window_to_interrupt(pid: int, *args: str | Path) -> subprocess.Popen:
    """`mem_profiler -p PID ARGS` once the target says its window is open; the test may
    end it with SIGINT as from a terminal (even where this runner ignores SIGINT)."""
    controller = subprocess.Popen(
        [MEM_PROFILER, "-p", str(pid), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_window(pid)
    return controller


def wait_for_window(pid: int) -> None:
    """Until pid says a window is open (read as root)."""
    wait_for(
        lambda: any(t.pid == pid and t.state.startswith("capturing") for t in list_targets()),
        timeout=30,
        what="the window to open",
    )


class CliAsUser:
    """`mem_profiler ARGS` run as `user`: forked from this process, which has the command
    line loaded already, since another user cannot reach this machine's interpreter
    (under /root). interrupt() is Ctrl-C; result() waits for its end."""

    def __init__(self, user: str, *args: str | Path | int) -> None:
        import mem_profiler.top.session  # noqa: F401  top's modules, imported when it starts
        from mem_profiler.cmd.mem_profiler import main

        account = pwd.getpwnam(user)
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover (the child)
            code = 99
            try:
                sys.stdout = open(out_write, "w")  # noqa: SIM115
                sys.stderr = open(err_write, "w")  # noqa: SIM115
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.setgroups([])
                os.setresgid(account.pw_gid, account.pw_gid, account.pw_gid)
                os.setresuid(account.pw_uid, account.pw_uid, account.pw_uid)
                main([str(a) for a in args])
                code = 0
            except SystemExit as end:
                code = end.code if isinstance(end.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(out_write)
        os.close(err_write)
        self._pipes = {out_read: bytearray(), err_read: bytearray()}
        self._out, self._err = out_read, err_read

    def interrupt(self) -> None:
        os.kill(self.pid, signal.SIGINT)

    def result(self, timeout: float = 60) -> subprocess.CompletedProcess:
        end = time.monotonic() + timeout
        with selectors.DefaultSelector() as waiting:
            for fd in self._pipes:
                waiting.register(fd, selectors.EVENT_READ)
            while waiting.get_map():
                left = end - time.monotonic()
                if left <= 0:
                    os.kill(self.pid, signal.SIGKILL)
                    raise AssertionError(f"mem_profiler as another user ran past {timeout} s")
                for key, _ in waiting.select(left):
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        self._pipes[key.fd] += chunk
                    else:
                        waiting.unregister(key.fd)
                        os.close(key.fd)
        _, status = os.waitpid(self.pid, 0)
        return subprocess.CompletedProcess(
            [],
            os.waitstatus_to_exitcode(status),
            self._pipes[self._out].decode(),
            self._pipes[self._err].decode(),
        )


def gate(
    *args: str | Path | int,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`mem_profiler gate ARGS`."""
    return subprocess.run(
        [MEM_PROFILER, "gate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def run_parser(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`mem_parser ARGS`, as a user runs it; it must succeed."""
    done = subprocess.run(
        [MEM_PARSER, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done


def flat_cum(heap: Path, binary: Path, index: str = "inuse_space"):
    """The aggregated table of a .heap file through the real parser pipeline."""
    return aggregate(symbolize(read_heap(heap), binary), index)


def report(heap: Path, binary: Path, index: str = "inuse_space") -> dict[str, tuple[float, float]]:
    """{function: (flat, cum)}"""
    table = flat_cum(heap, binary, index)
    rows = zip(table.names, table.flat, table.cum, strict=True)
    return {name: (float(f), float(c)) for name, f, c in rows}


def total(heap: Path, binary: Path, index: str = "inuse_space") -> float:
    return float(flat_cum(heap, binary, index).total)


def build_id(exe: Path) -> str:
    """The GNU build-id as readelf prints it."""
    notes = subprocess.run(["readelf", "-n", exe], capture_output=True, text=True).stdout
    found = re.search(r"Build ID: ([0-9a-f]+)", notes)
    assert found, notes
    return found[1]
