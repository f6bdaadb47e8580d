"""A process's capture window as a reader that follows it keeps it (mem_profiler top, the
pushes): the calling-context tree, the stacks and their figures, brought up to date by
each snapshot (read/window_snapshot.py) with what changed since the last. The tree and
the stacks only grow, so what a snapshot adds is appended, and only the stacks whose
counts moved are touched: a snapshot costs what changed, not the window."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mem_profiler.core.errors import HeapFileError
from mem_profiler.core.heaps import HEAPS
from mem_profiler.core.profile import HeapProfile
from mem_profiler.parser.common.sampling import unsample
from mem_profiler.parser.read.context_tree import StackTree, Tree, eval_range, hal_labels
from mem_profiler.parser.read.window_snapshot import NOTED_HEAP, HeapFigures, WindowSnapshot

# A stack's figures, as the window keeps them: the estimated objects and bytes in use,
# then allocated in the window (the `.heap` file's estimates).
FIGURES = ("cur_objs", "cur_bytes", "acc_objs", "acc_bytes")


class Column:
    """An array that grows at its end (amortized): `values` is what it holds."""

    def __init__(self, dtype: type | str, width: int = 0) -> None:
        self._shape = (width,) if width else ()
        self._data = np.zeros((16, *self._shape), dtype)
        self.size = 0

    @property
    def values(self) -> np.ndarray:
        return self._data[: self.size]

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self._data):  # by half again: a window's columns are tens of MB
            grown = np.zeros((max(need, 3 * len(self._data) // 2), *self._shape), self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : need] = values
        self.size = need


@dataclass
class Change:
    """What a snapshot changed: the stacks whose figures moved (ids), their figures
    before (0 for a stack met now) and after, (changed, 4) in FIGURES' order; and
    whether the window is another (`new_window`: the ids name other stacks now)."""

    ids: np.ndarray
    before: np.ndarray
    after: np.ndarray
    new_window: bool


class LiveWindow:
    """One window of one process, as its snapshots tell it. `apply` takes each snapshot
    in turn; a snapshot of everything (a new window, or the first) starts it afresh."""

    def __init__(self) -> None:
        self.token = 0  # the last snapshot's: the next one asks for what came since
        self._fresh()

    def _fresh(self) -> None:
        self.head = HeapProfile(path="", rate=1)
        self.rates = (1, 1)
        self.heaps: dict[int, HeapFigures] = {}
        self.frames = Column(np.uint64)
        self.parents = Column(np.int32)
        self.node_frames = Column(np.int32)
        self.parents.extend(np.zeros(1, np.int32))  # node 0: the root
        self.node_frames.extend(np.zeros(1, np.int32))
        self.native = Column(np.int32)
        self.python = Column(np.int32)
        self.heap = Column(np.int16)  # index into HEAPS; -1: a noted event's
        self.labels: dict[int, int] = {}  # stack id -> the HAL's flags, where not 0
        self.figures = Column(np.float64, len(FIGURES))

    @property
    def stacks(self) -> int:
        return self.native.size

    @property
    def start_ns(self) -> int | None:
        return self.head.window_ns[0]

    def apply(self, snap: WindowSnapshot) -> Change:
        """Brings the window up to `snap` (the snapshot that follows the last one, or one
        of everything); HeapFileError where it does not fit what came before."""
        start = snap.head.window_ns[0]
        kept = None  # the figures so far, where a snapshot of everything is of this window
        if snap.since == 0:
            if start == self.start_ns and self._same_so_far(snap):
                kept = self.figures.values.copy()
            self._fresh()
        elif snap.since != self.token or start != self.start_ns:
            raise HeapFileError(
                f"{snap.head.path}: a snapshot that follows another than the last one read"
            )
        spans = (
            (snap.frames_from, self.frames.size),
            (snap.nodes_from, self.parents.size),
            (snap.stacks_from, self.stacks),
        )
        if any(a != b for a, b in spans):
            raise HeapFileError(
                f"{snap.head.path}: a snapshot that does not start where the last one ended"
            )
        self._take_head(snap)
        self.frames.extend(snap.frames)
        self.parents.extend(snap.parents)
        self.node_frames.extend(snap.node_frames)
        self.native.extend(snap.native)
        self.python.extend(snap.python)
        heap = np.full(len(snap.heap), -1, np.int16)  # -1: a noted event's
        plain = (snap.heap & NOTED_HEAP) == 0
        heap[plain] = snap.heap[plain]
        self.heap.extend(heap)
        for k in np.flatnonzero(snap.label).tolist():
            self.labels[snap.stacks_from + k] = int(snap.label[k])
        self.figures.extend(np.zeros((len(snap.native), len(FIGURES))))
        if kept is not None:
            self.figures.values[: len(kept)] = kept
        after = self._estimates(snap)
        before = self.figures.values[snap.changed].copy()
        self.figures.values[snap.changed] = after
        self.token = snap.token
        return Change(snap.changed, before, after, snap.since == 0 and kept is None)

    def apply_file(self, prof: HeapProfile) -> Change:
        """Brings the window up to one of its files (a tree-format `.heap` file, whose
        stacks carry the sampler's ids): the window's last figures, as its end wrote them.
        A stack not seen before is counted without its chains, which only the file
        holds."""
        assert prof.stack_ids is not None and prof.estimates is not None
        new_window = prof.window_ns[0] != self.start_ns
        if new_window:
            self._fresh()
            self.head = dataclasses.replace(prof, estimates=None, stack_ids=None, labels={})
        ids = prof.stack_ids
        grow = int(ids.max(initial=-1)) + 1 - self.stacks
        if grow > 0:
            for column in (self.native, self.python):
                column.extend(np.zeros(grow, np.int32))
            self.heap.extend(np.full(grow, HEAPS.index(prof.heap)))
            self.figures.extend(np.zeros((grow, len(FIGURES))))
        before = self.figures.values[ids].copy()
        self.figures.values[ids] = prof.estimates
        return Change(ids, before, prof.estimates, new_window)

    def _same_so_far(self, snap: WindowSnapshot) -> bool:
        """Whether a snapshot of everything begins with the tree and stacks read so far
        (the process lost the last one this reader took: a write that failed)."""
        pairs = (
            (self.frames.values, snap.frames),
            (self.parents.values[1:], snap.parents),
            (self.native.values, snap.native),
            (self.python.values, snap.python),
        )
        return all(
            len(ours) <= len(theirs) and (theirs[: len(ours)] == ours).all()
            for ours, theirs in pairs
        )

    def _take_head(self, snap: WindowSnapshot) -> None:
        """Who ran and the window's figures; the mappings and build-ids where they
        changed; the Python frame records added."""
        head, new = self.head, snap.head
        records = {**head.python_frames, **new.python_frames}
        mappings, build_ids = head.mappings, head.build_ids
        if snap.maps_changed or snap.since == 0:
            mappings, build_ids = new.mappings, new.build_ids
        self.head = dataclasses.replace(
            new, python_frames=records, mappings=mappings, build_ids=build_ids
        )
        self.rates, self.heaps = snap.rates, snap.heaps

    def _estimates(self, snap: WindowSnapshot) -> np.ndarray:
        """The changed stacks' figures: their estimates where written, else their counts
        unsampled at their heap's rate (all samples of one size)."""
        heap = self.heap.values[snap.changed]
        if (heap < 0).any():
            raise HeapFileError(f"{snap.head.path}: counts of a noted event's stack")
        out = np.zeros((len(snap.changed), len(FIGURES)))
        host = heap == HEAPS.index("host")
        for rate, rows in ((self.rates[0], host), (self.rates[1], ~host)):
            counts = snap.counts[rows]
            out[rows, 0], out[rows, 1] = unsample(counts[:, 0], counts[:, 1], rate)
            out[rows, 2], out[rows, 3] = unsample(counts[:, 2], counts[:, 3], rate)
        out[snap.estimate_rows] = snap.estimates
        return out

    def profile_of(self, ids: np.ndarray) -> HeapProfile:
        """A profile of the stacks `ids` (in that order), its tree only their chains',
        with the window's head and their figures: what names their frames (symbolize)."""
        parent, frame = self.parents.values, self.node_frames.values
        native, python = self.native.values[ids], self.python.values[ids]
        keep = np.zeros(len(parent), bool)
        reach = np.unique(np.r_[native, python])
        while len(reach):
            reach = reach[(reach > 0) & ~keep[reach]]
            reach = reach[parent[reach] > 0]  # a chain's head (under the root) is not kept
            keep[reach] = True
            reach = np.unique(parent[reach])
        row = np.cumsum(keep)  # a kept node's row in the profile's tree
        kept = np.flatnonzero(keep)
        up = np.where(keep[parent[kept]], row[parent[kept]], 0)
        address = np.r_[np.uint64(0), self.frames.values[frame[kept]]]
        tree = Tree(np.r_[0, up], address)
        prof = dataclasses.replace(
            self.head,
            cur_objs=np.zeros(len(ids), np.int64),
            cur_bytes=np.zeros(len(ids), np.int64),
            acc_objs=np.zeros(len(ids), np.int64),
            acc_bytes=np.zeros(len(ids), np.int64),
            estimates=self.figures.values[ids].copy(),
            labels={},
        )
        flags = [self.labels.get(i, 0) for i in ids.tolist()]
        if any(flags):
            prof.labels = dict(enumerate(hal_labels(np.array(flags, np.uint64))))
        prof.set_stack_tree(
            StackTree(
                tree,
                np.where(keep[native], row[native], 0),
                np.where(keep[python], row[python], 0),
                eval_range(prof),
            )
        )
        return prof

    def heap_profile(self, heap: int) -> HeapProfile:
        """The window's head as a profile of `heap` (who ran, its rate), without stacks."""
        rate = self.rates[0] if HEAPS[heap] == "host" else self.rates[1]
        return dataclasses.replace(self.head, heap=HEAPS[heap], rate=rate)
