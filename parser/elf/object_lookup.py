"""What ELF objects say of addresses in them: the function symbol holding each, its
line and the calls inlined there. A profile with much to look up has part of it
looked up by a helper process beside this one, on a machine with a core to spare,
as pprof hands addresses to addr2line processes: either process may take any object
not taken yet (_Queue)."""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from mem_profiler.core.errors import ElfError
from mem_profiler.parser.elf import image as elf_image
from mem_profiler.parser.elf.image import ElfImage, demangle

Where = tuple[str, int] | None
InlinedChain = list[tuple[str, Where]]

# A profile with fewer addresses to look up than this is looked up here alone: a
# helper's start costs about what that many take.
HELPER_MIN_ADDRESSES = 2000
# A profile file this large has its helper started before it is read: the helper's own
# start (its imports) then passes while this process reads.
HELPER_EARLY_BYTES = 1 << 20
_READY = "ready"
# The helper is handed one request at a time, so that it is never given one this process
# could have begun sooner, and waits for the next: at most this long, the interpreter's
# switch interval while this process looks up beside the thread that hands them on.
_SWITCH_INTERVAL_S = 0.0005


@dataclass
class ObjectLookup:
    """The lookup of one object's addresses: which fall in a function symbol (`found`),
    and for those the symbol (`sym_of`, an index into `mangled` and into `names`,
    demangled) and the calls inlined there (`chains`); for the others the start of the
    function that holds them by the call-frame information (`unnamed_at`: the address
    itself where none does); each address's (file, line) when lines were asked for.
    `error`: why the object could not be read (ElfError's sentence), and nothing else is
    set."""

    found: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    sym_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unnamed_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    mangled: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    where: list[Where] = field(default_factory=list)
    chains: list[InlinedChain] = field(default_factory=list)
    stripped: bool = False  # no .symtab, here or in a debug file
    has_symbols: bool = False  # its symbol table names any function
    error: str | None = None


def look_up(image: ElfImage, offsets: np.ndarray, lines: bool) -> ObjectLookup:
    """The lookup of the file `offsets` in `image`."""
    vaddrs = image.offsets_to_vaddrs(offsets)
    try:
        symbols = image.symbols()
        where: list[Where] = image.lines(vaddrs) if lines else [None] * len(vaddrs)
        hit = symbols.lookup(vaddrs)
        found = hit >= 0
        chains = image.inlined(vaddrs[found])
    except ElfError as e:
        return ObjectLookup(error=str(e))
    sym_ids, sym_of = np.unique(hit[found], return_inverse=True)
    mangled = [symbols.names[s] for s in sym_ids.tolist()]
    unnamed = vaddrs[~found]
    return ObjectLookup(
        found,
        sym_of.reshape(-1),
        image.function_starts(unnamed) if len(unnamed) else unnamed,
        mangled,
        [demangle(name) for name in mangled],
        where,
        chains,
        image.stripped,
        len(symbols.names) > 0,
    )


_early: _Helper | None = None  # started by started_early, for the next look_up_all


@contextlib.contextmanager
def started_early(profile_path: str) -> Iterator[None]:
    """Within the block, the lookups (look_up_all) of the profile at `profile_path` have a
    helper started now, as the file is read, if it is large enough to be worth one on a
    machine with a core to spare; one they did not take is ended with the block."""
    global _early
    if _early is None and _file_size(profile_path) >= HELPER_EARLY_BYTES and _cores() > 1:
        _early = _Helper.start()
    try:
        yield
    finally:
        helper, _early = _early, None
        if helper is not None:
            helper.finish(wait=False)


def look_up_all(jobs: list[tuple[ElfImage, np.ndarray]], lines: bool) -> list[ObjectLookup]:
    """The lookups of the (image, file offsets) `jobs`, in their order."""
    global _early
    helper = None
    if _worth_a_helper(jobs):
        helper, _early = _early or _Helper.start(), None
    if helper is None:
        return [look_up(image, offsets, lines) for image, offsets in jobs]
    lookups: list[ObjectLookup | None] = [None] * len(jobs)
    queue = _Queue(jobs)
    feeder = threading.Thread(target=helper.feed, args=(jobs, queue, lookups, lines))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    feeder.start()
    done = False
    try:
        while (i := queue.take(for_helper=False)) is not None:
            lookups[i] = look_up(*jobs[i], lines)
        done = True
    finally:
        sys.setswitchinterval(interval)
        helper.finish(wait=done)
        feeder.join()
    # and what a helper that failed left
    return [
        lookup if lookup is not None else look_up(*jobs[i], lines)
        for i, lookup in enumerate(lookups)
    ]


def _worth_a_helper(jobs: list[tuple[ElfImage, np.ndarray]]) -> bool:
    return (
        len(jobs) > 1
        and sum(len(offsets) for image, offsets in jobs if not image.symbols_read)
        >= HELPER_MIN_ADDRESSES
        and _cores() > 1
    )


def _cores() -> int:
    return len(os.sched_getaffinity(0))


class _Queue:
    """The jobs left, each taken once: by this process the objects of the largest files
    first (a large symbol table is read where the peak of memory comes later anyway, in
    the merge), by the helper those whose lookups walk DWARF (line tables, inlined
    calls) first, then those of the most addresses."""

    def __init__(self, jobs: list[tuple[ElfImage, np.ndarray]]) -> None:
        self._lock = threading.Lock()
        self._taken = [False] * len(jobs)
        every = range(len(jobs))
        self._own_order = deque(sorted(every, key=lambda i: -_file_size(jobs[i][0].path)))
        self._helper_order = deque(
            sorted(every, key=lambda i: (not jobs[i][0].has_dwarf, -len(jobs[i][1])))
        )

    def take(self, for_helper: bool) -> int | None:
        """The next job to look up, None when none is left."""
        order = self._helper_order if for_helper else self._own_order
        with self._lock:
            while order:
                i = order.popleft()
                if not self._taken[i]:
                    self._taken[i] = True
                    return i
        return None


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # its read says what is wrong


class _Helper:
    """A Python process running this module (_serve): each request it reads, an image's
    path with the file offsets to look up, answered with their ObjectLookup, in order."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self.requests: IO[bytes] = process.stdin
        self.answers: IO[bytes] = process.stdout
        self.sent = False  # whether it was given work: then this process waits for it

    @classmethod
    def start(cls) -> _Helper | None:
        if not sys.executable:  # an embedded interpreter: no Python to start
            return None
        # the folder this package is in, as this process found it (not through links)
        root = Path(os.path.abspath(__file__)).parents[__name__.count(".")]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        try:
            return cls(
                subprocess.Popen(
                    [sys.executable, "-c", f"from {__name__} import _serve; _serve()"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            )
        except OSError:
            return None  # looked up here alone

    def feed(
        self,
        jobs: list[tuple[ElfImage, np.ndarray]],
        queue: _Queue,
        lookups: list[ObjectLookup | None],
        lines: bool,
    ) -> None:
        """Hand the helper jobs from `queue`, one at a time, until it is empty, each answer
        into `lookups` (a thread's work). A helper that fails leaves its job unanswered."""
        try:
            if pickle.load(self.answers) != _READY:
                return
            while (i := queue.take(for_helper=True)) is not None:
                self.sent = True
                image, offsets = jobs[i]
                request = (image.path, image.for_uid, elf_image.DEBUG_ROOTS, offsets, lines)
                pickle.dump(request, self.requests)
                self.requests.flush()
                lookups[i] = pickle.load(self.answers)
        except (OSError, EOFError, pickle.UnpicklingError):
            return  # what it held is looked up here

    def finish(self, wait: bool) -> None:
        """Its end: when `wait`, after it answered what it was given (a helper given
        nothing is not waited for)."""
        if not (wait and self.sent):
            self.process.kill()
        try:
            self.requests.close()
        except OSError:
            pass  # it is gone already
        self.process.wait()


def _serve() -> None:
    """The helper: requests from stdin, answers to what was stdout (stdout itself then
    goes to stderr, so that nothing printed can come between two answers)."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    pickle.dump(_READY, answers)
    answers.flush()
    while True:
        try:
            path, for_uid, debug_roots, offsets, lines = pickle.load(requests)
        except EOFError:
            # All is answered and every cache file written: the interpreter's teardown,
            # freeing what the lookups left, would only keep mem_parser waiting.
            os._exit(0)
        elf_image.DEBUG_ROOTS = debug_roots
        try:
            lookup = look_up(ElfImage(path, for_uid), offsets, lines)
        except ElfError as e:
            lookup = ObjectLookup(error=str(e))
        pickle.dump(lookup, answers)
        answers.flush()
