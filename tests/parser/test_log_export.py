"""The event log as CSV and SQLite (--events-csv, --events-db) of real runs of
tests/fixtures/log_steps.c at -c 1, where every allocation is logged: every event of
the fixture's sites is a row with its stack, step and end, and the tables give the same
leaks and peak as mem_parser computes from the log."""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import subprocess
import tempfile
from unittest import mock

import pytest
from support.profiling import profile_run

from mem_profiler.cmd.mem_parser import main
from mem_profiler.core.errors import UserError
from mem_profiler.parser.log import analysis, export
from mem_profiler.parser.msmemscope import analyzers

STEPS = 4  # log_steps step leak 4: steps 1-4, and step 5 marks the end of step 4
LEAK_BLOCKS, LEAK_SIZE = 2048, 4096  # step_leak, per step, kept
TRANSIENT_BLOCKS, TRANSIENT_SIZE = 256, 64 << 10  # step_transient, per step, freed


@pytest.fixture(scope="module")
def capture(log_steps_exe, tmp_path_factory):
    """(program, .heap) of log_steps with memprof_step() markers, every allocation logged."""
    exe = log_steps_exe
    out = tmp_path_factory.mktemp("export") / "s_"
    proc, heaps = profile_run([exe, "step", "leak", str(STEPS)], out, 1, "--mode", "log")
    assert proc.returncode == 0 and len(heaps) == 1, proc.stderr
    return exe, heaps[0]


def leaf(stack: str) -> str:
    return stack.rsplit(";", 1)[-1].split(" ", 1)[0]


def test_csv_holds_every_event_of_the_sites_with_step_and_end(capture, tmp_path, capsys):
    exe, heap = capture
    path = tmp_path / "events.csv"
    main(["-p", str(exe), "-f", str(heap), "--events-csv", str(path)])
    assert capsys.readouterr().out == ""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["id"]) for r in rows] == list(range(1, len(rows) + 1))
    assert [int(r["time_ns"]) for r in rows] == sorted(int(r["time_ns"]) for r in rows)
    steps = [r for r in rows if r["event"] == "step"]
    assert [int(r["step"]) for r in steps] == list(range(1, STEPS + 2))
    by_site: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r["event"] in ("alloc", "free"):
            by_site.setdefault((r["event"], leaf(r["native_stack"])), []).append(r)
    leaked = by_site["alloc", "step_leak"]
    assert len(leaked) == STEPS * LEAK_BLOCKS and ("free", "step_leak") not in by_site
    assert {(r["size"], r["end_ns"], r["heap"]) for r in leaked} == {(str(LEAK_SIZE), "", "host")}
    assert [sum(r["step"] == str(s) for r in leaked) for s in range(1, STEPS + 1)] == [
        LEAK_BLOCKS
    ] * STEPS
    made, freed = by_site["alloc", "step_transient"], by_site["free", "step_transient"]
    assert len(made) == len(freed) == STEPS * TRANSIENT_BLOCKS
    assert {r["size"] for r in made} == {str(TRANSIENT_SIZE)}
    # each allocation's end is the time of the free of its address that follows it
    frees = {(r["address"], r["time_ns"]) for r in freed}
    assert all((r["address"], r["end_ns"]) in frees for r in made)
    assert all(r["native_stack"].startswith("_start;") for r in made + leaked)
    assert ";main " in leaked[0]["native_stack"] and "log_steps.c:" in leaked[0]["native_stack"]


def sql(db, query: str) -> list[list[str]]:
    out = subprocess.run(
        ["sqlite3", "-separator", "|", str(db), query], capture_output=True, text=True, check=True
    ).stdout
    return [line.split("|") for line in out.splitlines()]


def test_sqlite_gives_the_logs_leaks_and_peak(capture, tmp_path, capsys):
    exe, heap = capture
    db = tmp_path / "events.db"
    main(["-p", str(exe), "-f", str(heap), "--events-db", str(db)])
    capsys.readouterr()
    # the schema of docs/log-mode.md
    assert sql(
        db, "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
    ) == [
        ["events_by_stack"],
        ["events_by_time"],
    ]
    assert dict(sql(db, "SELECT key, value FROM capture"))["program"] == str(exe)
    main(["-p", str(exe), "-f", str(heap), "--leaks", "--json"])
    leaks = json.loads(capsys.readouterr().out)
    ((leaked,),) = sql(
        db,
        "SELECT sum(estimated_bytes) FROM events"
        " WHERE event = 'alloc' AND heap = 'host' AND end_ns IS NULL",
    )
    assert int(leaked) == leaks["total_bytes"]
    ((highest,),) = sql(
        db,
        "SELECT max(live) FROM (SELECT sum(CASE event WHEN 'alloc' THEN estimated_bytes"
        " ELSE -estimated_bytes END) OVER (ORDER BY id) AS live FROM events"
        " WHERE heap = 'host')",
    )
    assert int(highest) == analyzers.peak(heap).bytes
    # what was live at a moment, one query (docs/log-mode.md): at step 3's start, the
    # leaks of steps 1 and 2 and model_init's weights
    ((start,),) = sql(db, "SELECT time_ns FROM events WHERE event = 'step' AND step = 3")
    live = dict(
        sql(
            db,
            "SELECT s.native_stack, sum(e.estimated_bytes) FROM events e JOIN stacks s"
            f" ON e.stack = s.id WHERE e.event = 'alloc' AND e.heap = 'host' AND"
            f" e.time_ns <= {start} AND (e.end_ns IS NULL OR e.end_ns > {start})"
            " GROUP BY s.native_stack",
        )
    )
    by_leaf: dict[str, int] = {}
    for stack, total in live.items():
        by_leaf[leaf(stack)] = by_leaf.get(leaf(stack), 0) + int(total)
    assert by_leaf["step_leak"] == 2 * LEAK_BLOCKS * LEAK_SIZE
    assert by_leaf["model_init"] == 4096 << 10
    assert "step_transient" not in by_leaf


def test_tables_of_a_log_without_its_heap_file_keep_addresses(capture, tmp_path, capsys):
    """A killed process writes no .heap: without its memory map, frames stay addresses."""
    exe, heap = capture
    (memlog,) = heap.parent.glob(heap.name.removesuffix(".heap") + ".*.memlog")
    alone = tmp_path / memlog.name
    shutil.copy(memlog, alone)
    path = tmp_path / "raw.csv"
    main(["-p", str(exe), "-f", str(alone), "--events-csv", str(path)])
    assert "without its memory map, frames stay addresses" in capsys.readouterr().err
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["event"] == "alloc"]
    assert sum(leaf(r["native_stack"]).startswith("0x") for r in rows) == len(rows) > 0


def test_the_api_writes_the_same_tables(capture, tmp_path, capsys):
    """msMemScope's data_format through analyze(): the same rows as mem_parser's."""
    exe, heap = capture
    main(["-p", str(exe), "-f", str(heap), "--events-db", str(tmp_path / "cli.db")])
    capsys.readouterr()
    written = analyzers.analyze(
        "export", input_path=heap, output=tmp_path / "api.db", data_format="db"
    )
    query = "SELECT * FROM events e JOIN stacks s ON e.stack = s.id ORDER BY e.id"
    assert sql(written, query) == sql(tmp_path / "cli.db", query) != []
    with pytest.raises(UserError, match="data_format 'xml': one of csv, db"):
        analyzers.export_events(heap, tmp_path / "x", data_format="xml")


def test_a_database_with_no_room_to_be_built_is_one_sentence(capture, tmp_path, capsys):
    """The database is built in TMPDIR (it can be many times the log): where that
    fails, mem_parser says so in a sentence and writes nothing."""
    exe, heap = capture
    gone = tmp_path / "gone"
    db = tmp_path / "events.db"
    with mock.patch.object(tempfile, "tempdir", str(gone)), pytest.raises(SystemExit) as ended:
        main(["-p", str(exe), "-f", str(heap), "--events-db", str(db)])
    assert ended.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mem_parser: cannot build the events database in {gone}: No such file or "
        "directory; set TMPDIR to a folder with room for it."
    )
    assert list(tmp_path.iterdir()) == []


def batches(stacks: int, rows: int) -> contextlib.ExitStack:
    """The log's stacks symbolized `stacks` at a time, and CSV rows made `rows` at a time."""
    sizes = contextlib.ExitStack()
    sizes.enter_context(mock.patch.object(analysis, "STACKS_AT_ONCE", stacks))
    sizes.enter_context(mock.patch.object(export, "_ROWS_AT_ONCE", rows))
    return sizes


def test_stacks_named_in_batches_read_as_named_at_once(capture, tmp_path, capsys):
    """The stacks are symbolized and named a batch at a time: in batches of two stacks,
    and of 4,000 rows in the CSV, the tables are the same, and a warning of the
    symbolizer is said once."""
    exe, heap = capture
    query = "SELECT * FROM events e JOIN stacks s ON e.stack = s.id ORDER BY e.id"
    small = (2, 4000)
    written: list[tuple[bytes, list[list[str]]]] = []
    for stacks, rows in ((analysis.STACKS_AT_ONCE, export._ROWS_AT_ONCE), small):
        out = tmp_path / str(len(written))
        out.mkdir()
        with batches(stacks, rows):
            args = ["--events-csv", str(out / "e.csv"), "--events-db", str(out / "e.db")]
            main(["-p", str(exe), "-f", str(heap), *args])
        written.append(((out / "e.csv").read_bytes(), sql(out / "e.db", query)))
    assert written[1] == written[0]
    assert b";step_leak /" in written[1][0] and b"/log_steps.c:" in written[1][0]
    capsys.readouterr()
    stripped = tmp_path / "stripped" / exe.name  # its addresses stay addresses: a warning
    stripped.parent.mkdir()
    subprocess.run(["strip", "-o", str(stripped), str(exe)], check=True)
    with batches(*small):
        main(["-p", str(stripped), "-f", str(heap), "--events-csv", str(tmp_path / "s.csv")])
    warnings = [w for w in capsys.readouterr().err.splitlines() if "warning:" in w]
    assert len(warnings) == len(set(warnings)) >= 1, warnings
