"""A live window's snapshots read and kept (parser/read/window_snapshot.py,
live_window.py): the window as they tell it, what each changed, and every damage a
target could write refused in one sentence before anything is kept."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from support.snapshot_files import Snapshot, snapshot_file, snapshot_payload, two_stacks

from mem_profiler.core.errors import HeapFileError
from mem_profiler.parser.read.live_window import LiveWindow
from mem_profiler.parser.read.window_snapshot import (
    BYTES_FLOOR,
    OverCap,
    WindowCap,
    parse_snapshot,
    read_snapshot,
)


def applied(window: LiveWindow, s: Snapshot):
    return window.apply(parse_snapshot(snapshot_file(s), "snap"))


def test_a_window_is_kept_from_its_snapshots_and_each_says_what_changed():
    """Two snapshots: the first holds everything, the second only a frame, a node and a
    stack made since and the counts that moved; the window has all of it, the changes are
    the figures before and after (rate 1: the counts), and a profile of some stacks holds
    their chains alone, without the heads."""
    window = LiveWindow()
    first = applied(window, two_stacks())
    assert first.new_window and first.ids.tolist() == [0, 1]
    assert first.before.tolist() == [[0, 0, 0, 0]] * 2
    assert first.after.tolist() == [[1, 100, 2, 200], [0, 0, 3, 30]]
    more = Snapshot(
        token=2, since=1, frames_from=4, frames=[0x401300], nodes_from=5, parents=[2],
        node_frames=[4], stacks_from=2, native=[5], changed=[1, 2],
        counts=[(1, 10, 4, 40), (2, 16, 2, 16)], maps=None,
    )  # fmt: skip
    second = applied(window, more)
    assert not second.new_window and second.ids.tolist() == [1, 2]
    assert second.before.tolist() == [[0, 0, 3, 30], [0, 0, 0, 0]]
    assert second.after.tolist() == [[1, 10, 4, 40], [2, 16, 2, 16]]
    assert window.stacks == 3 and window.token == 2
    assert window.head.mappings  # kept from the first: the second's did not change
    prof = window.profile_of(np.array([0, 2]))
    assert prof.stacks == [(0x401100, 0x401000), (0x401300, 0x401000)]


def test_a_snapshot_of_everything_of_the_same_window_keeps_the_figures():
    """The process lost the reader's last snapshot (a write that failed): the next holds
    everything again, and what changed is against the figures already counted."""
    window = LiveWindow()
    applied(window, two_stacks())
    again = dataclasses.replace(two_stacks(), token=7, counts=[(1, 100, 5, 500), (0, 0, 3, 30)])
    change = applied(window, again)
    assert not change.new_window
    assert change.before.tolist() == [[1, 100, 2, 200], [0, 0, 3, 30]]


def test_a_snapshot_of_another_window_starts_afresh():
    window = LiveWindow()
    applied(window, two_stacks())
    other = two_stacks()
    other.header = [h.replace("window_start_ns: 100", "window_start_ns: 150") for h in other.header]
    change = applied(window, other)
    assert change.new_window and change.before.tolist() == [[0, 0, 0, 0]] * 2


def delta(**changes) -> Snapshot:
    return dataclasses.replace(
        Snapshot(token=2, since=1, frames_from=4, nodes_from=5, stacks_from=2, maps=None),
        **changes,
    )


@pytest.mark.parametrize(
    ("snapshot", "says"),
    [
        (delta(since=9), "follows another than the last one read"),
        (delta(frames_from=3), "does not start where the last one ended"),
        (delta(stacks_from=5), "does not start where the last one ended"),
        (delta(changed=[1, 1], counts=[(1, 1, 1, 1)] * 2), "counts of one stack twice"),
    ],
)
def test_a_snapshot_that_does_not_follow_the_last_is_refused(snapshot, says):
    window = LiveWindow()
    applied(window, two_stacks())
    with pytest.raises(HeapFileError, match=says):
        applied(window, snapshot)
    assert window.token == 1 and window.stacks == 2  # nothing of it kept


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda s: setattr(s, "parents", [0, 1, 3, 2]), "whose parent does not come before it"),
        (lambda s: setattr(s, "node_frames", [0, 1, 2, 9]), "names a frame beyond the 4"),
        (lambda s: setattr(s, "native", [3, 9]), "leaf is beyond the 5 nodes"),
        (lambda s: setattr(s, "changed", [0, 5]), "counts of a stack beyond the 2"),
        (lambda s: setattr(s, "heap", [0, 77]), "a stack of no heap this reader knows"),
        (lambda s: setattr(s, "counts", [(1, 1, 2**63, 1), (0, 0, 1, 1)]), "too large"),
        (lambda s: s.estimates.update({0: (1, 1, float("nan"), 1)}), "not a finite number"),
        (lambda s: setattr(s, "header", s.header[:-2]), "no '# rates: host=R device=R' line"),
        (lambda s: setattr(s, "nodes_from", 0), "nodes that start at 0, the root"),
    ],
)
def test_a_damaged_snapshot_is_refused_in_a_sentence(damage, says):
    s = two_stacks()
    damage(s)
    with pytest.raises(HeapFileError, match=says) as refused:
        parse_snapshot(snapshot_file(s), "snap")
    assert "\n" not in str(refused.value)


def test_a_cut_or_swollen_snapshot_is_refused():
    """Cut short inside its arrays, its stream cut, or arrays that declare less than
    follows them: each one sentence."""
    payload = snapshot_payload(two_stacks())
    at = payload.index(b"\nMAPPED_LIBRARIES:")
    with pytest.raises(HeapFileError, match="arrays are cut short"):
        parse_snapshot(snapshot_file(two_stacks(), payload[: at - 8]), "snap")
    whole = snapshot_file(two_stacks())
    with pytest.raises(HeapFileError, match="cut short"):
        parse_snapshot(whole[: len(whole) - 9], "snap")
    with pytest.raises(HeapFileError, match="right after the snapshot's arrays"):
        parse_snapshot(snapshot_file(two_stacks(), payload[:at] + b"\x00" * 4 + payload[at:]))
    with pytest.raises(HeapFileError, match="not a snapshot"):
        parse_snapshot(b"memprof_tree/2\n" + whole[19:], "snap")


def test_a_window_past_its_readers_cap_is_refused_before_its_arrays_are_read(tmp_path):
    """A reader that keeps at most 1 stack of a window: a snapshot of two stacks is
    refused with the cap and how to raise it; one whose line declares a billion stacks
    over a few bytes is refused by that line, before anything else is read; a file past
    the cap's bytes is refused by its size. A window within the cap is read."""
    cap = WindowCap(1, "--max-stacks")
    with pytest.raises(
        OverCap,
        match=r"holds 2 stacks in a call tree of 5 nodes, more than the"
        r" 1 stacks and 32 nodes kept of one window \(--max-stacks raises it\)",
    ):
        parse_snapshot(snapshot_file(two_stacks()), "snap", cap)
    assert parse_snapshot(snapshot_file(two_stacks()), "snap", WindowCap(2, "")).stacks_from == 0
    payload = snapshot_payload(two_stacks()).replace(b"stacks=0-2", b"stacks=0-1000000000")
    with pytest.raises(OverCap, match="holds 1,000,000,000 stacks"):
        parse_snapshot(snapshot_file(two_stacks(), payload), "snap", cap)
    swollen = tmp_path / "swollen.snapshot"
    swollen.write_bytes(snapshot_file(two_stacks()))
    os.truncate(swollen, BYTES_FLOOR + 1)  # sparse: the size alone
    with pytest.raises(OverCap, match=f"a snapshot of {BYTES_FLOOR + 1:,} bytes, more than"):
        read_snapshot(swollen, cap)
