"""What every backend's request holds alike: each heap's series labels, and what a
request carries, as the sender says it."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Sequence

from mem_profiler.core.version import VERSION
from mem_profiler.push.periods import HeapPeriod


def series_labels(period: HeapPeriod, user: dict[str, str]) -> dict[str, str]:
    """A heap's series: what it is, whose, from where, and the user's labels over ours;
    none empty."""
    profile = period.profile
    exe = profile.exe or ""
    labels = {
        "__name__": "memory",
        "service_name": service_name(profile.exe, profile.cmdline),
        "host": socket.gethostname(),
        "pid": "" if profile.pid is None else str(profile.pid),
        "exe": exe,
        "build_id": profile.build_ids.get(exe, ""),
        "heap": profile.heap,
        "version": VERSION,
        **user,
    }
    return {name: value for name, value in labels.items() if value}


def service_name(exe: str | None, cmdline: str | None) -> str:
    """The program's name: its executable's, or for an interpreter the script's or
    module's it runs (`python3 -m app.main` is app.main)."""
    name = os.path.basename(exe or "") or "unknown"
    args = (cmdline or "").split()[1:]
    if re.fullmatch(r"python[\d.]*|node|ruby|perl[\d.]*|java", name) and args:
        for i, arg in enumerate(args):
            if arg == "-m" and i + 1 < len(args):
                return args[i + 1]
            if not arg.startswith("-"):
                return os.path.basename(arg).removesuffix(".py")
    return name


def labelled(
    processes: Sequence[list[HeapPeriod]], user: dict[str, str]
) -> list[tuple[HeapPeriod, dict[str, str]]]:
    """Each heap period of the processes with its series' labels."""
    return [(period, series_labels(period, user)) for periods in processes for period in periods]


def carried(processes: Sequence[list[HeapPeriod]]) -> str:
    """What the requests carry, as the sender says it: the processes' profiles."""
    pids = sorted({p.profile.pid for periods in processes for p in periods if p.profile.pid})
    return "the profiles of process" + ("es " if len(pids) > 1 else " ") + ", ".join(map(str, pids))
