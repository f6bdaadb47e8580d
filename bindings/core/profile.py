"""The profile model every stage shares: one capture file's contents (HeapProfile) and
what its lines name (Python frames, failed device allocations, foreign ranges, drops).
Readers fill it (parser/read/heap_file.py); the arrays are numpy's, imported only when an
empty profile is made, so that the model's users import nothing heavy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from mem_profiler.core.memory_map import MemoryMapping
from mem_profiler.core.units import format_size

if TYPE_CHECKING:
    from typing import Self

    import numpy as np

# A Python frame's address is FRAME_BASE + its record's id: not a canonical x86-64
# address, so no mapping holds it and jeprof shows it as a bare address.
FRAME_BASE = 0x5079000000000000
FRAME_END = FRAME_BASE + 2**32
# A frame the file names itself (pprof's functions and lines): NAMED_BASE + its id.
NAMED_BASE = 0x4E41000000000000
NAMED_END = NAMED_BASE + 2**32


def _empty(dtype: str, length: int = 0) -> np.ndarray:
    import numpy as np

    return np.zeros(length, dtype)


@dataclass(frozen=True)
class PythonFrame:
    """What a Python frame was when it was sampled: its function's qualified name
    (the code's name before 3.11), file, first line and the line it was running
    (-1 where the instruction has none)."""

    name: str
    file: str
    line: int
    first_line: int


@dataclass(frozen=True)
class NamedFrame:
    """A native frame a profile names itself, as pprof's files do: its function, the
    function's source file and the line."""

    name: str
    file: str
    line: int


@dataclass
class Failure:
    """A failed allocation of a device heap: `# failed_alloc: time_ns= bytes= error= @ ...`"""

    time_ns: int
    bytes: int
    error: int
    stack: tuple[int, ...]  # addresses, leaf first


@dataclass
class Foreign:
    """A range the process used but did not allocate, registered or open when the file was
    written, never counted in the heap's figures:
    `# foreign: time_ns= bytes= kind= address= @ ...`"""

    time_ns: int
    bytes: int  # 0 for an IPC range whose size the driver did not give
    kind: str  # one of FOREIGN_KINDS
    address: int
    stack: tuple[int, ...]  # addresses, leaf first


# host memory registered with CUDA (cuda_host), device memory opened through IPC (cuda)
FOREIGN_KINDS = ("host_register", "ipc_open")


@dataclass(frozen=True)
class Drops:
    """Samples the sampler's tables had no room for: `# dropped: ...`."""

    stack_table: int  # no stack id: missing from every figure
    live_table: int  # counted as allocated, missing from the in-use figures
    memory: int  # no per-thread counters: missing from every figure
    bytes: int  # the allocations they stood for, unsampled

    @property
    def samples(self) -> int:
        return self.stack_table + self.live_table + self.memory


class StackSource(Protocol):
    """Stacks kept in a compact form (parser/context_tree.StackTree)."""

    def expand(self) -> tuple[np.ndarray, np.ndarray]:
        """The stacks' addresses, leaf first, and their offsets."""
        ...


@dataclass
class LiveBlocks:
    """A device heap's samples live at the end of a window without an event log
    (`blocks=`): each one's row of the profile, address and size."""

    row: np.ndarray  # int64
    address: np.ndarray  # uint64
    size: np.ndarray  # int64


@dataclass
class PerStack:
    """Arrays of a row per stack of a profile (the dataclass's fields), which follow its
    stacks as they are taken or merged."""

    def taken(self, which: np.ndarray) -> Self:
        """Those of the stacks `which`, in that order."""
        return dataclasses.replace(
            self, **{f.name: getattr(self, f.name)[which] for f in dataclasses.fields(self)}
        )

    def summed(self, row_of: np.ndarray, rows: int) -> Self:
        """Those of `rows` stacks, stack i's added to row row_of[i]'s."""
        import numpy as np

        sums = {}
        for f in dataclasses.fields(self):
            values = getattr(self, f.name)
            sums[f.name] = np.zeros((rows, *values.shape[1:]), values.dtype)
            np.add.at(sums[f.name], row_of, values)
        return dataclasses.replace(self, **sums)


@dataclass
class StackFigures(PerStack):
    """Per stack of a profile, what the sampler counted of it at one moment besides its
    counts: int64 (stacks, 2) its live samples and their bytes, float64 (stacks, 2) the
    objects and bytes they stand for."""

    counters: np.ndarray
    estimates: np.ndarray


# The upper bounds (ns) of the lifetimes' bins, each ten times the last, and the bins'
# names: then the longer lived, and those live at the end.
LIFETIME_ENDS_NS = tuple(10**k for k in range(3, 10))
LIFETIME_BINS = ("<1us", "<10us", "<100us", "<1ms", "<10ms", "<100ms", "<1s", ">=1s", "live")


@dataclass
class StackFrees(PerStack):
    """Per stack of a profile, its sampled frees in the window as a table-mode window
    counts them (`lifetimes=`), raw samples like its counters: int64 (stacks, 8) by how
    long they lived (LIFETIME_BINS but live), int64 (stacks, 2) the temporary ones (freed
    by their thread before it allocated anything else) and their bytes."""

    by_lifetime: np.ndarray
    temporary: np.ndarray


@dataclass
class HeapProfile:
    """The contents of one .heap file, counts still raw (sampled)."""

    path: str
    rate: int
    version: str = ""
    pid: int | None = None
    cmdline: str | None = None
    exe: str | None = None
    # whose profile it is where its file cannot tell (a live window's snapshot, removed
    # once read; the kernel's word, not the file's): the files read for it, theirs to read
    owner: int | None = None
    heap: str = "host"
    meta: dict[str, str] = field(default_factory=dict)
    build_ids: dict[str, str] = field(default_factory=dict)
    dropped_samples: int = 0
    drops: Drops | None = None  # by cause, where the file says
    warnings: list[str] = field(default_factory=list)  # the sampler's, in words (`# warning:`)
    # The stacks, leaf first: stack i is addrs[offsets[i]:offsets[i + 1]]. Where a file
    # holds them as a tree (stack_tree), they are expanded from it on first use.
    addrs: np.ndarray = field(default_factory=lambda: _empty("uint64"))
    offsets: np.ndarray = field(default_factory=lambda: _empty("int64", 1))
    cur_objs: np.ndarray = field(default_factory=lambda: _empty("int64"))
    cur_bytes: np.ndarray = field(default_factory=lambda: _empty("int64"))
    acc_objs: np.ndarray = field(default_factory=lambda: _empty("int64"))
    acc_bytes: np.ndarray = field(default_factory=lambda: _empty("int64"))
    # float64 (stacks, 4): the sums of each stack's sample weights (`# estimate:` lines:
    # in-use objects and bytes, allocated objects and bytes), None in files without them.
    estimates: np.ndarray | None = None
    # What each stack held at the heap's peak, in a tree that records it (`peaks=`)
    peak: StackFigures | None = None
    # What each held at the program's end that nothing pointed to, where that was looked
    # for (`unreachable=`, `run --leak-check`)
    unreachable: StackFigures | None = None
    # Each stack's sampled frees by how long they lived, in a table-mode window's tree
    # (`lifetimes=`; an event log times each free itself)
    frees: StackFrees | None = None
    # A device heap's live samples, by address, in a window without an event log (rows
    # of the profile as read: a profile whose stacks are taken or merged has none)
    live_blocks: LiveBlocks | None = None
    mappings: list[MemoryMapping] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)  # stack index -> `# labels:` text
    failures: list[Failure] = field(default_factory=list)  # failed device allocations
    foreign: list[Foreign] = field(default_factory=list)  # registered or opened, not allocated
    # the Python frames the stacks hold, by address (`# python_frame:` lines)
    python_frames: dict[int, PythonFrame] = field(default_factory=dict)
    # the frames the file names itself, by address (pprof's: parser/read/pprof.py)
    named_frames: dict[int, NamedFrame] = field(default_factory=dict)
    # the sampler's id of each stack (a tree's), by which a live window's snapshots name
    # it (parser/read/live_window.py); None in other files
    stack_ids: np.ndarray | None = field(default=None, compare=False)

    # parser/context_tree.StackTree, while addrs and offsets are not yet expanded from it
    stack_tree: StackSource | None = field(default=None, init=False, repr=False, compare=False)
    # In a profile merged from another's stacks (parser/symbols/merged_stacks.py): per
    # stack of that one, the stack here that holds it; a copy (replace) has none.
    merged_from: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def set_stack_tree(self, tree: StackSource) -> None:
        """Take the stacks from `tree`, expanded only when addrs or offsets are read."""
        self.stack_tree = tree
        self._addrs: np.ndarray | None = None
        self._offsets: np.ndarray | None = None

    @property
    def window_ns(self) -> tuple[int | None, int | None]:
        """Start and end of the capture window (CLOCK_REALTIME ns), None where unknown."""
        found = (self.meta.get(f"window_{key}_ns", "") for key in ("start", "end"))
        start, end = (int(value) if value.isdigit() else None for value in found)
        return start, end

    @property
    def peak_bytes(self) -> int | None:
        """The most bytes live at once in the window (`# peak_live_bytes`), None where the
        file does not say."""
        text = self.meta.get("peak_live_bytes", "")
        return int(text) if text.isdigit() else None

    @property
    def peak_stacks_bytes(self) -> int | None:
        """The heap's figure when the stacks of its peak (`peak`) were recorded: the peak
        itself, or within a step of it below (the sampler records them at each rise of 1/16,
        docs/reports.md); None where the file does not say."""
        text = self.meta.get("peak_stacks_bytes", "")
        return int(text) if text.isdigit() else None

    @property
    def python_frames_left_out(self) -> int:
        """Python frames the sampler left out of stacks, its tables of their functions
        and lines being full (`# python_frames_left_out`)."""
        return int(self.meta.get("python_frames_left_out", 0))

    @property
    def stacks(self) -> list[tuple[int, ...]]:
        """Each stack's addresses, leaf first, as tuples."""
        addrs = self.addrs.tolist()
        bounds = self.offsets.tolist()
        return [tuple(addrs[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def in_use(profile: HeapProfile, figures: StackFigures | None) -> HeapProfile | None:
    """The profile with `figures` (its peak, or what nothing pointed to at its end) as
    its in-use figures, its allocated ones as they are; None without them."""
    import copy

    import numpy as np

    if figures is None:
        return None
    then = copy.copy(profile)
    then.cur_objs = np.ascontiguousarray(figures.counters[:, 0])
    then.cur_bytes = np.ascontiguousarray(figures.counters[:, 1])
    if profile.estimates is not None:
        then.estimates = profile.estimates.copy()
        then.estimates[:, :2] = figures.estimates
    return then


# The `#` lines that say when a file's in-use figures were taken (report/notes'
# ending_note): not said of figures of another moment, its peak's or a log's.
_MOMENT_TAKEN = ("ended_at", "taken_at")


def of_another_moment(meta: dict[str, str]) -> dict[str, str]:
    """A file's `#` lines for in-use figures of another moment than the file's own."""
    return {k: v for k, v in meta.items() if k not in _MOMENT_TAKEN}


def at_peak(profile: HeapProfile) -> HeapProfile | None:
    """What each stack held at the heap's peak as the profile's in-use figures, or None
    where the file does not record them."""
    then = in_use(profile, profile.peak)
    if then is not None:
        then.meta = of_another_moment(profile.meta)
    return then


def peak_stacks_moment(profile: HeapProfile) -> str | None:
    """Where the stacks of the heap's peak (at_peak) were recorded below the peak itself,
    the moment they are of, in a sentence; None where they are the peak's own."""
    peak, at = profile.peak_bytes, profile.peak_stacks_bytes
    if not peak or at is None or at >= peak:
        return None
    return (
        f"the stacks shown are the sampler's last record of them, at"
        f" {format_size(at, exact=True)}, {100 * at / peak:.1f}% of the peak (it records"
        " them at each rise of 1/16)"
    )


def stacks_only(profile: HeapProfile, addrs: np.ndarray, offsets: np.ndarray) -> HeapProfile:
    """The profile's file, memory map and frames around these stacks (laid out as its
    own), with no counts: for naming stacks that are not its samples' (a log's, its
    failed allocations')."""
    import dataclasses

    import numpy as np

    zeros = np.zeros(len(offsets) - 1, np.int64)
    return dataclasses.replace(
        profile,
        addrs=addrs,
        offsets=offsets,
        cur_objs=zeros,
        cur_bytes=zeros,
        acc_objs=zeros,
        acc_bytes=zeros,
        estimates=None,
        peak=None,
        unreachable=None,
        labels={},
        failures=[],
        foreign=[],
    )


def _stack_array(name: str) -> property:
    """HeapProfile.addrs or .offsets: expanded from the stack tree on first read; setting
    either drops the tree, which no longer describes the stacks."""
    private = "_" + name

    def get(self: HeapProfile) -> np.ndarray:
        if getattr(self, private, None) is None:
            assert self.stack_tree is not None  # set_stack_tree left the arrays unset
            addrs, offsets = self.stack_tree.expand()
            self._addrs = addrs
            self._offsets = offsets
        return getattr(self, private)

    def set(self: HeapProfile, value: np.ndarray) -> None:
        setattr(self, private, value)
        self.stack_tree = None

    return property(get, set)


HeapProfile.addrs = _stack_array("addrs")  # type: ignore[assignment]
HeapProfile.offsets = _stack_array("offsets")  # type: ignore[assignment]
