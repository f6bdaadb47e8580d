"""mem_profiler top's batch output as tests read it, and what grower.c's sites show in it
(tests/cmd/test_top.py, and the arm64 suite's top)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mem_profiler.live_view import FOLDER_PREFIX, SNAPSHOT_FOLDER
from support.paths import FIXTURES, MEM_PROFILER
from support.sampling_math import assert_estimate, relative_sd, sample_weight

MiB = 1024 * 1024
GROWER = FIXTURES / "grower.c"
GROW_RATE = 4096 * 1000  # grower.c: site_grow keeps 4096 B a millisecond
CHURN_PER_GROW = 16  # site_churn allocates (and frees) 65536 B at each of those ticks
# The grower's ticks are absolute times, but a tick due at a snapshot's instant may run a
# little after it (the scheduler's wake-up latency): 10 ticks of slack at either end, and
# as many more as the grower says it ran late (a busy machine's, GROWER_LATENESS).
SCHEDULING_SLACK_TICKS = 10
LATENESS_FILE = "grower_late"
# What a block of 64 KiB stands for at -c 1024: a churning site's in use when a snapshot
# falls between its malloc and its free.
BLOCK_64K_WEIGHT = sample_weight(65536, 1024)
_UNITS = {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB}
_AMOUNT = r"([+-]?[0-9.]+) (B|KiB|MiB|GiB)"
_ROW_RE = re.compile(rf"^\s*{_AMOUNT}\s+{_AMOUNT}/s\s+{_AMOUNT}/s\s+(\w+)\s+(.+?)\s*$")
_INTERVAL_RE = re.compile(r"refresh (\d+) over ([0-9.]+) s")


@dataclass
class Row:
    in_use: float
    growth: float
    alloc_rate: float
    heap: str
    stack: str

    @property
    def site(self) -> str:
        return self.stack.split()[0]


@dataclass
class Refresh:
    number: int
    interval_s: float
    header: list[str]
    rows: list[Row]


def amount(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


def parse_rows(lines: list[str]) -> list[Row]:
    rows = []
    for line in lines:
        m = _ROW_RE.match(line)
        if m:
            rows.append(Row(amount(m[1], m[2]), amount(m[3], m[4]), amount(m[5], m[6]), m[7], m[8]))
    return rows


def parse_batch(text: str) -> list[Refresh]:
    refreshes = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        table = next(i for i, line in enumerate(lines) if line.split()[:2] == ["IN", "USE"])
        m = _INTERVAL_RE.search(block)
        assert m is not None, block
        number, interval = m.groups()
        refreshes.append(
            Refresh(int(number), float(interval), lines[:table], parse_rows(lines[table + 1 :]))
        )
    return refreshes


def top(pid: int, *args: str, timeout: float = 60) -> list[Refresh]:
    """The refreshes of a top that ended well and left no snapshot folder."""
    proc = subprocess.Popen(
        [MEM_PROFILER, "top", "-p", str(pid), *args],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0 and err == "", err
    assert folders_of(proc.pid) == []
    return parse_batch(out)


def folders_of(view_pid: int) -> list[str]:
    """The snapshot folders of the top whose pid this is."""
    return [
        e.name
        for e in os.scandir(SNAPSHOT_FOLDER)
        if e.name.startswith(f"{FOLDER_PREFIX}{view_pid}.")
    ]


def grower_env(folder: Path) -> dict[str, str]:
    """What has the grower note in `folder` the most ticks it ran late (grower.c)."""
    return {"GROWER_LATENESS": str(folder / LATENESS_FILE)}


def check_grower_rows(rows: list[Row], interval_s: float, folder: Path | None = None) -> None:
    """site_grow's growth is its allocation rate, which is the schedule's within the
    sampling error and the lateness the grower noted in `folder` (grower_env), if any;
    site_churn allocates 16 times as much at the same ticks."""
    grow = next(r for r in rows if r.site == "site_grow")
    churn = next(r for r in rows if r.site == "site_churn")
    ticks = interval_s * 1000
    sd = relative_sd(round(ticks), 4096, 1024)
    noted = folder / LATENESS_FILE if folder else None
    late = int(noted.read_text()) if noted and noted.exists() else 0
    slack = (SCHEDULING_SLACK_TICKS + late) / ticks
    assert abs(grow.growth - GROW_RATE) <= (5 * sd + slack) * GROW_RATE, (grow, interval_s)
    # both sites at every tick: the ratio does not depend on timing
    assert_estimate(churn.alloc_rate / CHURN_PER_GROW, grow.alloc_rate, sd, 0.05)
    assert churn.in_use <= BLOCK_64K_WEIGHT
    assert abs(churn.growth) * interval_s <= 65536 * 1.01


def assert_grown_as_allocated(refreshes: list[Refresh]) -> None:
    """site_grow never frees: the same samples make its growth and its allocation rate,
    which agree but for the samples of a snapshot's moment.  The live table is read before
    the counters, and a sample taken between the two reads counts as allocated in that
    snapshot and as grown in the next; how many there are depends on how long the target
    took between the reads, which the scheduler decides (a loaded machine preempts it for
    milliseconds, a sample's worth each).  So the agreement is looked for in one refresh
    of several; a view whose two figures came from different samples misses it in all."""
    gaps = []
    for refresh in refreshes:
        grow = next(r for r in refresh.rows if r.site == "site_grow")
        gaps.append(abs(grow.growth - grow.alloc_rate) * refresh.interval_s)
    assert min(gaps) <= 3 * sample_weight(4096, 1024), gaps
