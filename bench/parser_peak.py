"""`make bench`'s mem_parser, for its memory in all: mem_parser run in this process, then
its peak RSS and that of each process it started (the helper that looks up symbols
beside it) added up, in KiB, to OUT. The peaks are added as if they came at once: an
upper bound.

A child's peak is its VmHWM, read while it runs: its ru_maxrss would be no lower than
this process's size when it was started (see peak_rss.c).

usage: python parser_peak.py OUT MEM_PARSER_ARGS..."""

from __future__ import annotations

import glob
import sys
import threading
from pathlib import Path

from mem_profiler.cmd.cli_input import leave
from mem_profiler.cmd.mem_parser import main as mem_parser

POLL_S = 0.02


def vm_hwm(pid: int | str) -> int:
    """The peak RSS of a running process in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def watch_children(peaks: dict[int, int], stop: threading.Event) -> None:
    while not stop.wait(POLL_S):
        for listing in glob.glob("/proc/self/task/*/children"):
            with open(listing) as f:
                for pid in map(int, f.read().split()):
                    # the last figure while it runs: until its exec, a child started
                    # by vfork reads as this process
                    peaks[pid] = vm_hwm(pid) or peaks.get(pid, 0)


def run() -> None:
    out, args = Path(sys.argv[1]), sys.argv[2:]
    peaks: dict[int, int] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_children, args=(peaks, stop), daemon=True)
    watcher.start()
    try:
        mem_parser(args)
        code: int | str | None = 0
    except SystemExit as e:
        code = e.code
    stop.set()
    watcher.join()
    out.write_text(str(vm_hwm("self") + sum(peaks.values())))
    if code:
        sys.exit(code)
    leave()  # as the command ends


if __name__ == "__main__":
    run()
