"""A capture's event log as a table, one row per sampled allocation, free, mark and step
in time order, written as CSV or as an SQLite database (msMemScope's
`--data-format=csv|db`), for a spreadsheet or SQL. The columns are documented in
docs/log-mode.md; the SQLite file keeps each stack's text once, in its own table."""

from __future__ import annotations

import csv
import io
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mem_profiler.core.errors import UserError
from mem_profiler.core.escape import spreadsheet_cell
from mem_profiler.core.frame_label import shown_files
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.profile import HeapProfile, stacks_only
from mem_profiler.parser.log.analysis import (
    NEVER,
    WindowLog,
    estimates,
    event_ends,
    stack_batches,
)
from mem_profiler.parser.read.event_log import ALLOC, MARK_KINDS, USE_OPS
from mem_profiler.parser.symbols.symbolize import SymbolizedProfile

if TYPE_CHECKING:
    import sqlite3

EVENT_COLUMNS = (
    "id",  # the row's place in time order, from 1
    "event",  # alloc, free, mark, range_start, range_end, step; launch, copy, set
    "heap",  # host, cuda, ...; empty for marks
    "time_ns",  # from the window's start
    "pid",
    "tid",
    "address",
    "size",  # requested bytes
    "estimated_bytes",  # the bytes the sample stands for, unsampled
    "end_ns",  # an allocation's free (or reuse of its address); empty if live at the end
    "step",  # the number of the last step begun at the event's time; empty before one
    "stack",  # the stack's id
    "text",  # a mark's or range's text; a device operation's values; empty for the others
)
STACK_COLUMNS = ("python_stack", "native_stack")  # root first, frames joined by ";"
_TABLES = """
CREATE TABLE capture (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE stacks (id INTEGER PRIMARY KEY, heap TEXT, python_stack TEXT, native_stack TEXT);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, event TEXT NOT NULL, heap TEXT, time_ns INTEGER NOT NULL,
    pid INTEGER NOT NULL, tid INTEGER NOT NULL, address INTEGER, size INTEGER,
    estimated_bytes INTEGER, end_ns INTEGER, step INTEGER,
    stack INTEGER REFERENCES stacks (id), text TEXT
);
"""
_INDEXES = """
CREATE INDEX events_by_time ON events (heap, time_ns);
CREATE INDEX events_by_stack ON events (stack);
"""
_MARK_EVENTS = ("mark", "range_start", "range_end", "step")  # by MARK_KINDS


_ROWS_AT_ONCE = 65536  # CSV rows made together, their stacks named together


@dataclass
class StackText:
    python: str
    native: str


class StackTexts:
    """The log's stacks as text, each its Python and its native frames joined by ";",
    root first: named by `name` (a profile of some of the log's stacks, stacks_profile,
    symbolized with source lines), else raw addresses. Named a batch of stacks at a
    time (stack_batches): the text of all of a log's stacks can be ten times the log
    (620 MB of a 66 MiB one)."""

    def __init__(
        self, cap: WindowLog, name: Callable[[HeapProfile], SymbolizedProfile] | None
    ) -> None:
        self.cap = cap
        self.ids = sorted(cap.log.stacks)
        self._name = name
        # a Python file shown alike in every batch, told from every file the log names
        records = cap.profile.python_frames.values() if cap.profile is not None else ()
        self._shown: dict[str | None, str] = {}
        self._shown.update(shown_files(r.file for r in records))

    def of(self, ids: list[int]) -> list[StackText]:
        """The texts of the stacks `ids`, which the log holds."""
        texts = []
        for _, batch in stack_batches(self.cap.log.stacks, ids):
            texts += self._named(batch)
        return texts

    def _named(self, ids: list[int]) -> list[StackText]:
        if self._name is None:
            addrs, offsets = self.cap.log.stacks.frames_of(ids)
            unique, frames = np.unique(addrs, return_inverse=True)
            labels = [f"0x{a:x}" for a in unique.tolist()]
            is_python = [False] * len(labels)
        else:
            sym = self._name(stacks_profile(self.cap, ids))
            frames, offsets = sym.frames, sym.offsets
            labels = sym.location_labels(lines=True, shown=self._shown)
            files = sym.python_files
            is_python = [files[f] is not None for f in sym.func_of.tolist()]
        located, bounds = frames.tolist(), offsets.tolist()
        texts = []
        for k in range(len(ids)):
            stack = located[bounds[k] : bounds[k + 1]][::-1]
            texts.append(
                StackText(
                    ";".join(labels[f] for f in stack if is_python[f]),
                    ";".join(labels[f] for f in stack if not is_python[f]),
                )
            )
        return texts


def stacks_profile(cap: WindowLog, ids: list[int] | None = None) -> HeapProfile:
    """The stacks `ids` of the log (every stack, by ascending id, where None), as a
    profile with no counts: for the symbolizer, with the capture's memory map where its
    .heap file is there."""
    ids = sorted(cap.log.stacks) if ids is None else ids
    return stacks_only(_named_by(cap), *cap.log.stacks.frames_of(ids))


def tree_profile(cap: WindowLog, ids: list[int]) -> HeapProfile | None:
    """The stacks `ids` as stacks_profile gives them, but left in the log's tree for
    symbolize to merge; None where the tree does not hold them all."""
    tree = cap.log.stacks.tree_of(ids)
    if tree is None:
        return None
    profile = stacks_only(_named_by(cap), np.zeros(0, np.uint64), np.zeros(len(ids) + 1, np.int64))
    profile.set_stack_tree(tree)
    return profile


def _named_by(cap: WindowLog) -> HeapProfile:
    """What names the log's stacks: its .heap file's profile, or one of the log alone."""
    return cap.profile or HeapProfile(path=cap.log.files[0], rate=cap.log.rate, pid=cap.log.pid)


def event_rows(cap: WindowLog) -> Iterator[tuple]:
    """The rows of EVENT_COLUMNS, in time order (at one time: marks, allocations and
    frees, then device operations, whose text is the values they were passed in hex)."""
    log = cap.log
    ev = log.events
    ends = event_ends(ev)
    weights = np.zeros(len(ev), np.int64)
    for heap in np.unique(ev["heap"]).tolist():
        mine = ev["heap"] == heap
        weights[mine] = estimates(ev["size"][mine], log.rate_of(heap))
    steps = [m for m in log.marks if m.kind == "step"]
    step_times = np.array([m.time_ns for m in steps], np.int64)
    # marks, events, then device operations, merged by time: in that order in a tie
    times = np.concatenate(
        [np.array([m.time_ns for m in log.marks], np.int64), ev["time_ns"], log.uses["time_ns"]]
    )
    order = np.argsort(times, kind="stable")
    step_at = (np.searchsorted(step_times, times, "right") - 1).tolist()
    n_marks, n_events = len(log.marks), len(ev)
    kinds, heaps, tids = ev["type"].tolist(), ev["heap"].tolist(), ev["tid"].tolist()
    sizes, addresses, stacks = ev["size"].tolist(), ev["address"].tolist(), ev["stack"].tolist()
    for row, k in enumerate(order.tolist(), 1):
        step = steps[step_at[k]].id if step_at[k] >= 0 else None
        if k < n_marks:
            m = log.marks[k]
            event = _MARK_EVENTS[MARK_KINDS.index(m.kind)]
            text = None if m.kind == "step" else m.text
            yield (row, event, None, m.time_ns, log.pid, m.tid, *[None] * 4, step, None, text)
            continue
        if k >= n_marks + n_events:
            u = log.uses[k - n_marks - n_events]
            first, count = int(u["first"]), int(u["count"])
            values = " ".join(f"0x{v:x}" for v in log.use_values[first : first + count].tolist())
            yield (
                row,
                USE_OPS[u["op"]] if u["op"] < len(USE_OPS) else "operation",
                HEAPS[u["heap"]],
                int(times[k]),
                log.pid,
                int(u["tid"]),
                *[None] * 4,
                step,
                None,
                values,
            )
            continue
        e = k - n_marks
        alloc = kinds[e] == ALLOC
        end = int(ends[e]) if alloc and ends[e] != NEVER else None
        yield (
            row,
            "alloc" if alloc else "free",
            HEAPS[heaps[e]],
            int(times[k]),
            log.pid,
            tids[e],
            addresses[e],
            sizes[e],
            int(weights[e]),
            end,
            step,
            stacks[e],
            None,
        )


def csv_pieces(cap: WindowLog, texts: StackTexts) -> Iterator[bytes]:
    """The CSV file, a piece per batch of rows: EVENT_COLUMNS then STACK_COLUMNS, the
    address in hexadecimal."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EVENT_COLUMNS + STACK_COLUMNS)
    none = StackText("", "")
    rows = event_rows(cap)
    while batch := list(itertools.islice(rows, _ROWS_AT_ONCE)):
        wanted = sorted({row[11] for row in batch if row[11] is not None})
        named = dict(zip(wanted, texts.of(wanted), strict=True))
        for row in batch:
            address, stack = row[6], row[11]
            text = named[stack] if stack is not None else none
            writer.writerow(
                (
                    *row[:6],
                    "" if address is None else f"0x{address:x}",
                    *row[7:12],
                    spreadsheet_cell(row[12] or ""),
                    spreadsheet_cell(text.python),
                    spreadsheet_cell(text.native),
                )
            )
            if buffer.tell() > 1 << 20:
                yield buffer.getvalue().encode("utf-8", "surrogateescape")
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode("utf-8", "surrogateescape")


def sqlite_pieces(cap: WindowLog, texts: StackTexts, program: str | None) -> Iterator[bytes]:
    """The SQLite database of the capture (_TABLES, _INDEXES), as pieces of its file. It
    is built in a file of a private temporary folder (TMPDIR), since a log's database
    can be many times the log, and read back from there."""
    import sqlite3  # only here: most runs of mem_parser write none

    try:
        folder = tempfile.mkdtemp(prefix="mem_parser-")
    except OSError as e:
        raise _no_room(e.strerror or str(e)) from None
    try:
        path = os.path.join(folder, "events.db")
        db = sqlite3.connect(path, isolation_level=None)
        try:
            # a file nobody else reads until it is whole: no journal, no syncs
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.executescript(_TABLES)
            db.execute("BEGIN")
            _fill(db, cap, texts, program)
            db.execute("COMMIT")
            db.executescript(_INDEXES)  # once filled: faster than kept up row by row
        except sqlite3.Error as e:  # the disk full, most likely
            raise _no_room(str(e)) from None
        finally:
            db.close()
        with open(path, "rb") as f:
            while piece := f.read(1 << 20):
                yield piece
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _no_room(why: str) -> UserError:
    return UserError(
        f"cannot build the events database in {tempfile.gettempdir()}: {why}; "
        "set TMPDIR to a folder with room for it."
    )


def _fill(db: sqlite3.Connection, cap: WindowLog, texts: StackTexts, program: str | None) -> None:
    log = cap.log
    facts = {
        "pid": log.pid,
        "program": program or "",
        "rate": log.rate,
        "device_rate": log.device_rate,
        "start_ns": log.start_ns,
        "end_ns": log.end_ns,
        "log": log.base,
    }
    db.executemany("INSERT INTO capture VALUES (?, ?)", [(k, str(v)) for k, v in facts.items()])
    for _, batch in stack_batches(log.stacks, texts.ids):
        db.executemany(
            "INSERT INTO stacks VALUES (?, ?, ?, ?)",
            [
                (i, HEAPS[heap], t.python, t.native)
                for i, heap, t in zip(
                    batch, log.stacks.heaps_of(batch), texts.of(batch), strict=True
                )
            ],
        )
    db.executemany(
        f"INSERT INTO events VALUES ({', '.join('?' * len(EVENT_COLUMNS))})", event_rows(cap)
    )
