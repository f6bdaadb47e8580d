"""The event log reader (parser/read/event_log.py): logs the sampler wrote (a run under
`mem_profiler run --mode log`, a rotating run with a small cap, a process killed with
SIGKILL), logs cut mid-record, synthetic logs with records of unknown types, and bad input
on the command line."""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from support.paths import LIBMEMPROF, MEM_PARSER
from support.processes import wait_for
from support.profiling import profile_run
from support.synthetic_logs import (
    event,
    header,
    large_log,
    mark_record,
    stack_record,
    timeline_record,
)

from mem_profiler.cmd.mem_parser import main
from mem_profiler.parser.log.analysis import open_window_log, replay
from mem_profiler.parser.read.event_log import (
    ALLOC,
    FREE,
    NODE,
    TIMELINE,
    TREE_STACK,
    locate,
    read_log,
)

MiB = 1 << 20


# --- synthetic logs, written as sampler/memprof_log.h lays them out ---------------------


def test_reads_every_record_and_skips_unknown_types(tmp_path):
    unknown = struct.pack("<BBH8s", 99, 0, 12, b"future!!")
    (tmp_path / "x_1.0001.1.memlog").write_bytes(
        header()
        + stack_record(3, [0x401000, 0x402000])
        + event(ALLOC, 1000, 64, 0x10, 3)
        + unknown
        + mark_record(1500, b"half way")
        + event(FREE, 2000, 64, 0x10, 3)
        + timeline_record(100_000_000, 64, 0)
    )
    log = read_log(str(tmp_path / "x_1.0001"))
    assert log.warnings == []
    assert log.events["type"].tolist() == [ALLOC, FREE]
    assert log.events["time_ns"].tolist() == [1000, 2000]  # from the window's start
    assert log.stacks[3].frames.tolist() == [0x401000, 0x402000]
    assert [(m.text, m.time_ns, m.kind) for m in log.marks] == [("half way", 1500, "point")]
    assert log.timeline["peak"].tolist() == [64] and log.end_ns == 100_000_000


def test_long_runs_of_events_read_whole_between_other_records(tmp_path):
    """Runs of events longer than the reader's stretch of one pattern match (a program's
    events once its stacks are known), broken by a mark and by a record of another
    size, and a last event cut short: every whole event, in its order."""

    def events(first: int, count: int) -> bytes:
        return b"".join(
            event(ALLOC if i % 2 == 0 else FREE, i, 64, 0x10 + i // 2)
            for i in range(first, first + count)
        )

    (tmp_path / "r_1.0001.1.memlog").write_bytes(
        header()
        + events(0, 1000)
        + mark_record(1000, b"between")
        + events(1000, 999)
        + stack_record(3, [0x401000])
        + events(1999, 3000)
        + event(ALLOC, 4999, 64, 0x10)[:20]
    )
    log = read_log(str(tmp_path / "r_1.0001"))
    assert log.events["time_ns"].tolist() == list(range(4999))
    assert log.events["type"].tolist() == [ALLOC if i % 2 == 0 else FREE for i in range(4999)]
    assert [m.text for m in log.marks] == ["between"] and len(log.stacks) == 1
    assert len(log.warnings) == 1 and "ends in the middle of a record" in log.warnings[0]


def test_reads_the_newest_consecutive_files(tmp_path):
    base = tmp_path / "g_1.0001"
    for k in (1, 3, 4):  # 2 is gone: 1 is a stray from before the gap
        Path(f"{base}.{k}.memlog").write_bytes(
            header(k) + stack_record(k, [0x401000]) + event(ALLOC, 1000 * k, 8, k, k)
        )
    Path(f"{base}.5.memlog").write_bytes(b"")  # rotation opened it; nothing reached it
    log = read_log(str(base))
    assert log.first_file == 3 and log.events["stack"].tolist() == [3, 4]
    rotated, empty = log.warnings
    assert "1-2 of" in rotated and "deleted by rotation" in rotated
    assert "files 1 are left over" in rotated
    assert "5.memlog holds no records" in empty


def test_bad_magic_and_version_are_one_line_errors(tmp_path, capsys):
    for name, content, expect in (
        ("magic", header(magic=b"NOTALOG!"), "not a mem_profiler event log"),
        ("version", header(version=9), "format version 9"),
        ("short", b"MPLOG", "too short"),
    ):
        path = tmp_path / f"{name}_1.0001.1.memlog"
        path.write_bytes(content)
        with pytest.raises(SystemExit) as exit_:
            main(["-p", "/bin/true", "-f", str(path), "--timeline", str(tmp_path / "t.svg")])
        out, err = capsys.readouterr()
        assert (exit_.value.code, out) == (2, "")
        assert err.startswith("mem_parser: ") and err.count("\n") == 1 and expect in err, err


def test_heap_without_log_and_console_script(tmp_path, build_fixture):
    heap = tmp_path / "plain.heap"
    heap.write_text("heap_v2/1024\n# heap: host\n  t*: 0: 0 [0: 0]\n\nMAPPED_LIBRARIES:\n")
    done = subprocess.run(
        [MEM_PARSER, "-p", "/bin/true", "-f", str(heap), "--peak"], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.count("\n") == 1 and "--mode log" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# --- logs the sampler wrote -------------------------------------------------------------


@pytest.fixture(scope="module")
def curve(build_fixture, tmp_path_factory):
    """log_curve run to its end under --mode log: (program, .heap)."""
    exe = build_fixture("log_curve")
    proc, heaps = profile_run([exe], tmp_path_factory.mktemp("curve") / "c_", 1024, "--mode", "log")
    assert proc.returncode == 0 and len(heaps) == 1, proc.stderr
    return exe, heaps[0]


def record_offsets(data: bytes) -> dict[int, list[int]]:
    """{record type: offsets of its records} of a log file, read by its length fields."""
    offsets: dict[int, list[int]] = {}
    pos = len(header())
    while pos + 4 <= len(data):
        offsets.setdefault(data[pos], []).append(pos)
        pos += data[pos + 2] | data[pos + 3] << 8
    return offsets


def test_log_cut_mid_record_is_read_up_to_the_last_whole_one(curve, tmp_path):
    base, _ = locate(curve[1])
    (full_path,) = Path(base).parent.glob(Path(base).name + ".*.memlog")
    full = read_log(base)
    data = full_path.read_bytes()
    offsets = record_offsets(data)
    assert {ALLOC, FREE, NODE, TREE_STACK, TIMELINE} <= set(offsets)
    # cut inside the head of a record, just after it, and in its middle, for each type
    # (a record's head whole and its body cut once made the reader loop forever); each
    # a record after the first event, so that some events come before the cut
    cuts: list[tuple[int, int | None]]  # (where cut, timeline records then read; None: any)
    cuts = [(len(data) - 10, len(full.timeline) - 1)]  # the last record
    for kind in (ALLOC, FREE, NODE, TREE_STACK, TIMELINE):
        later = [at for at in offsets[kind] if at > offsets[ALLOC][0]]
        middle = later[len(later) // 2]
        cuts += [(middle + into, None) for into in (2, 4, 5, 12)]
    for cut, timeline in cuts:
        copy = tmp_path / f"cut{cut}_1.0001.1.memlog"
        copy.write_bytes(data[:cut])
        log = read_log(str(copy)[: -len(".1.memlog")])
        (warning,) = log.warnings
        assert "ends in the middle of a record" in warning, warning
        m = re.search(rf"read up to byte (\d+) of {cut}\.", warning)
        assert m is not None, warning
        end = int(m[1])
        assert 0 < cut - end < 20 + 8 * 128  # less than the longest record is left out
        assert 0 < len(log.events) <= len(full.events)
        assert (log.events == full.events[: len(log.events)]).all()
        assert timeline is None or len(log.timeline) == timeline


def test_rotation_keeps_the_newest_files_and_reads_them(build_fixture, tmp_path):
    exe = build_fixture("log_curve")
    proc, (heap,) = profile_run(
        [exe], tmp_path / "r_", 1024, "--mode", "log", "--log-cap", "65536", "--log-files", "3"
    )
    assert proc.returncode == 0, proc.stderr
    base, _ = locate(heap)
    kept = sorted(int(p.name.split(".")[-2]) for p in tmp_path.glob("r_*.memlog"))
    newest = kept[-1]
    assert newest > 5 and kept == [newest - 2, newest - 1, newest]  # the oldest went
    assert all(p.stat().st_size <= 65536 + 4096 for p in tmp_path.glob("r_*.memlog"))

    cap = open_window_log(heap)
    log = cap.log
    assert log.first_file == newest - 2 and len(log.files) == 3
    assert any("deleted by rotation" in w for w in log.warnings)
    # The three newest 64 KiB files may span less than one 100 ms interval on a busy
    # machine: the record written when the window closed is always among them.
    assert (log.events["time_ns"] > 0).all() and len(log.timeline) >= 1
    # the program's pointers are in the files' own stack records (each file stands alone)
    assert set(log.events["stack"].tolist()) <= set(log.stacks)
    # the replay starts from the first timeline record kept, and ends where the sampler did
    times, values = replay(cap)
    assert values[-1] == log.timeline["end"][-1]


def spike_logged(folder: Path) -> bool:
    """Whether log_curve's log in `folder`, still written, has the timeline record of its
    96 MiB spike (the next tick after the spike writes it)."""
    logs = list(folder.glob("k_*.memlog"))
    return (
        bool(logs)
        and open_window_log(logs[0]).log.timeline["peak"].max(initial=0) >= 96 * MiB * 0.95
    )


def test_killed_process_leaves_a_readable_log(build_fixture, tmp_path, clean_env, capsys):
    exe = build_fixture("log_curve")
    env = dict(
        os.environ,
        LD_PRELOAD=str(LIBMEMPROF),
        MEMPROF_MODE="log",
        MEMPROF_CAPTURE="1",
        MEMPROF_RATE="1024",
        MEMPROF_PREFIX=str(tmp_path / "k_"),
    )
    with subprocess.Popen([exe], env=env, stdout=subprocess.PIPE, text=True) as target:
        watchdog = threading.Timer(60, target.kill)  # never wait forever for its line
        watchdog.start()
        assert target.stdout is not None
        assert target.stdout.readline() == "spike held\n"
        watchdog.cancel()
        wait_for(lambda: spike_logged(tmp_path), timeout=30, what="the spike's timeline tick")
        target.send_signal(signal.SIGKILL)
    assert target.returncode == -signal.SIGKILL
    (memlog,) = tmp_path.glob("k_*.memlog")
    assert not list(tmp_path.glob("*.heap"))

    cap = open_window_log(memlog)
    assert cap.profile is None and any("no .heap" in w for w in cap.warnings)
    assert cap.log.timeline["peak"].max() >= 96 * MiB * 0.95

    # moved to another folder, the files are still found from one another
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(memlog, moved / memlog.name)
    svg = tmp_path / "killed.svg"
    main(["-p", str(exe), "-f", str(moved / memlog.name), "--timeline", str(svg)])
    out, err = capsys.readouterr()
    assert out == "" and "warning: no .heap" in err
    assert svg.read_text().startswith("<svg")


# --- a large log -----------------------------------------------------------------------


def test_reads_a_60_mb_log(tmp_path):
    """1.65 M events with a new stack record every 16 events for the first 100,000 (its
    reading time is `make bench`'s)."""
    path = tmp_path / "big_1.0001.1.memlog"
    large_log(path)
    assert path.stat().st_size > 60e6
    log = read_log(str(tmp_path / "big_1.0001"))
    assert len(log.events) == 1_650_000 and len(log.stacks) == 100_000
    assert (log.events["type"][1::2] == FREE).all() and (log.events["size"] == 4096).all()
