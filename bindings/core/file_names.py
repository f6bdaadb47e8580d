"""The names of the files a capture writes (ARCHITECTURE.md, *The `.heap` file*): the one
home of the rule the sampler names them by, for the command lines that launch or control a
process as for the parser, so it imports nothing heavy.

A window's files share a stem, `<prefix><pid>.<seq>` (seq: 4 digits, from 0001 for each
prefix, after the files the process already has there):

    <stem>.heap            the host heap
    <stem>.<heap>.heap     each device heap the window used
    <stem>.<k>.memlog      the event log of a log-mode window, k = 1, 2, ... as it rotates

A prefix that ends in "/" names a folder: the files are then `<pid>.<seq>...` in it. What
was live when a device allocation failed is a window's files of its own, under the
prefix followed by `oom_` (failure_prefix), with the seq of the window's dump."""

from __future__ import annotations

import os
import re

from mem_profiler.core.heaps import HEAPS

_LOG_FILE = re.compile(r"\.(\d+)\.memlog$")


def failure_prefix(prefix: str) -> str:
    """The prefix of the files written as a device allocation failed (MEMPROF_FAILURE_TAG
    in sampler/control/window.h)."""
    return prefix + "oom_"


def absolute_prefix(prefix: str) -> str:
    """The prefix made absolute, so a program that changes folder still writes here."""
    folder, base = os.path.split(os.path.expanduser(prefix))
    return os.path.join(os.path.abspath(folder or "."), base)


def window_stem(prefix: str, pid: int, seq: int) -> str:
    """`<prefix><pid>.<seq>`: what the names of one window's files start with."""
    return f"{prefix}{pid}.{seq:04d}"


def heap_file(stem: str, heap: str) -> str:
    """The file of one heap of the window `stem`."""
    return f"{stem}.heap" if heap == "host" else f"{stem}.{heap}.heap"


def heap_stem(path: str) -> str:
    """The stem of the window whose heap the file `path` is (heap_file's inverse)."""
    stem = path.removesuffix(".heap")
    head, dot, heap = stem.rpartition(".")
    return head if dot and heap in HEAPS[1:] else stem


def window_files(window: str | os.PathLike[str]) -> dict[str, str]:
    """The .heap files on disk of one window, given its stem or its host heap's file, by
    heap: the host heap's first, then the device heaps' in the order of their names."""
    stem = os.fspath(window).removesuffix(".heap")
    files = {heap: heap_file(stem, heap) for heap in (HEAPS[0], *sorted(HEAPS[1:]))}
    return {heap: path for heap, path in files.items() if os.path.isfile(path)}


def failure_files(window: str | os.PathLike[str], prefix: str) -> list[str]:
    """The files on disk of what was live when the program of the window `window` (its
    stem or its host heap's file, written under `prefix`) ran out of device memory."""
    stem = os.fspath(window).removesuffix(".heap")
    absolute = absolute_prefix(prefix)
    if not stem.startswith(absolute):
        return []
    return list(window_files(failure_prefix(absolute) + stem[len(absolute) :]).values())


def heap_file_pattern(prefix: str) -> re.Pattern[str]:
    """Matches the name (without its folder) of a .heap file that a capture with this
    prefix writes; its groups are the pid, the seq and the heap (None for the host)."""
    return re.compile(_base(prefix) + r"(\d+)\.(\d{4})(?:\.([a-z_]+))?\.heap$")


def log_file_pattern(prefix: str) -> re.Pattern[str]:
    """Matches the name (without its folder) of a .memlog file that a capture with this
    prefix writes; its groups are the pid, the seq and k."""
    return re.compile(_base(prefix) + r"(\d+)\.(\d{4})\.(\d+)\.memlog$")


def _base(prefix: str) -> str:
    return re.escape(os.path.basename(absolute_prefix(prefix)))


def highest_seq(prefix: str, pid: int) -> int:
    """The highest sequence number of the files process pid wrote with this prefix (0:
    none): the sampler numbers a window's files after it."""
    seqs = [
        int(m[2])
        for path in files_of_process(prefix, pid)
        for p in (heap_file_pattern(prefix), log_file_pattern(prefix))
        if (m := p.match(os.path.basename(path)))
    ]
    return max(seqs, default=0)


def files_of_process(prefix: str, pid: int, after_seq: int = 0) -> list[str]:
    """Every .heap and .memlog file that process pid wrote with this prefix under a
    sequence number above `after_seq`, by path."""
    folder = os.path.dirname(absolute_prefix(prefix))
    patterns = (heap_file_pattern(prefix), log_file_pattern(prefix))
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return sorted(
        e.path
        for e in entries
        if any(
            (m := p.match(e.name)) and int(m[1]) == pid and int(m[2]) > after_seq for p in patterns
        )
    )


def log_stem(path: str) -> str | None:
    """The stem of the window whose event log the file `path` is, None if it is not a
    .memlog file."""
    match = _LOG_FILE.search(path)
    return None if match is None else path[: match.start()]


def log_file(stem: str, k: int) -> str:
    """The k-th event log file of the window `stem`."""
    return f"{stem}.{k}.memlog"


def log_files(stem: str) -> dict[int, str]:
    """{k: path} of the event log files of the window `stem` on disk."""
    import glob

    found = {}
    for path in glob.glob(glob.escape(stem) + ".*.memlog"):
        match = _LOG_FILE.search(path)
        if match is not None and path[: match.start()] == stem:
            found[int(match[1])] = path
    return found
