"""The in-process Python API: capture windows of this very process through the preloaded
sampler's public C API (sampler/memprof.h), with cffi in ABI mode.

    with mem_profiler.capture() as cap:      # every allocation recorded
        work()
    print(cap.peak_bytes, cap.live_bytes)
    print(cap.report())

The sampler must be preloaded (`mem_profiler run --idle -- python ...`); without it
every call raises SamplerNotLoaded, whose message says how to start.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from cffi import FFI

from mem_profiler.control import defaults
from mem_profiler.core.file_names import absolute_prefix, window_files
from mem_profiler.core.heaps import HEAPS

_CDEF = """
int memprof_start(uint64_t rate, int max_depth, const char *prefix);
int memprof_stop(char *path_out, size_t path_len);
int memprof_dump(char *path_out, size_t path_len);
int memprof_is_capturing(void);
int memprof_heap_bytes(const char *heap, uint64_t *live, uint64_t *peak);
void memprof_mark(const char *text);
uint64_t memprof_step(void);
"""
_PATH_MAX = 4096
NOT_LOADED = (
    "the mem_profiler sampler is not loaded in this process: start it with "
    "`mem_profiler run --idle -- python ...` or "
    "`LD_PRELOAD=$(mem_profiler lib) python ...`"
)

_ffi = FFI()
_ffi.cdef(_CDEF)
_process = _ffi.dlopen(None)  # the global scope, where LD_PRELOAD put libmemprof.so
# Made once, so that a window does not record the API's own buffers.
_buffers = threading.Lock()
_path = _ffi.new("char[]", _PATH_MAX)
_counts = _ffi.new("uint64_t[2]")


class SamplerNotLoaded(RuntimeError):
    """libmemprof.so is not preloaded into this process."""


class CaptureError(RuntimeError):
    """A window could not be opened, closed or written; the message says why."""


class MarksUnavailable(NotImplementedError):
    """The loaded libmemprof.so predates memprof_mark/memprof_step."""


class HeapBytes(NamedTuple):
    live: int
    peak: int


def _call(name: str) -> Any:  # a cffi function: cffi has no types
    try:
        return getattr(_process, name)
    except AttributeError:
        if name in ("memprof_mark", "memprof_step") and sampler_loaded():
            raise MarksUnavailable(
                f"the loaded libmemprof.so has no {name}: rebuild it with `make build`"
            ) from None
        raise SamplerNotLoaded(NOT_LOADED) from None


def sampler_loaded() -> bool:
    """True when libmemprof.so is preloaded into this process."""
    try:
        _process.memprof_is_capturing  # noqa: B018 (the lookup is the test)
    except AttributeError:
        return False
    return True


def is_capturing() -> bool:
    """True while a capture window is open in this process."""
    return bool(_call("memprof_is_capturing")())


def start(
    rate: int = defaults.RATE,
    output: str | None = None,
    depth: int = defaults.DEPTH,
) -> None:
    """Open a capture window: `rate` mean bytes between samples (1: every allocation),
    `output` the path prefix of its files (default: MEMPROF_PREFIX, else
    mem_profiler.control.defaults.PREFIX), `depth` frames per stack. Its live bytes and their
    peak per heap are kept (see heap_bytes)."""
    begin = _call("memprof_start")
    if is_capturing():
        raise CaptureError(_start_problem(errno.EBUSY, rate, depth))
    prefix = _ffi.NULL
    if output is not None:
        path = absolute_prefix(output)
        folder = os.path.dirname(path)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise CaptureError(f"cannot write profiles into {folder}: choose another output")
        prefix = path.encode()
    if begin(rate, depth, prefix) != 0:
        err = _ffi.errno
        raise CaptureError(_start_problem(err, rate, depth))


def _start_problem(err: int, rate: int, depth: int) -> str:
    if err == errno.EBUSY:
        return (
            "a capture window is already open in this process (`mem_profiler run` "
            "without --idle opens one at start): stop() it first"
        )
    if err == errno.EINVAL:
        return (
            f"bad window settings: rate {rate} (at least 1), depth {depth} "
            f"(1 to {defaults.MAX_DEPTH})"
        )
    if err == errno.ENAMETOOLONG:
        return "the output prefix is too long"
    return f"could not open a capture window: {os.strerror(err)}"


def _write(name: str) -> Path:
    write = _call(name)
    with _buffers:
        ok = write(_path, _PATH_MAX) == 0
        err, path = _ffi.errno, _ffi.string(_path).decode()
    if ok:
        return Path(path)
    if err == errno.ESRCH:
        raise CaptureError("no capture window is open in this process: start() one first")
    raise CaptureError(f"the profile could not be written: {os.strerror(err)}")


def stop() -> Path:
    """Close the window and write its files; returns the host heap's file (device heaps
    the window used are beside it, as core.file_names.window_files lists)."""
    return _write("memprof_stop")


def dump() -> Path:
    """Write the open window's files without closing it; returns the host heap's file."""
    return _write("memprof_dump")


def mark(label: str) -> None:
    """Record a named point in time in the event log of a window in log mode (no-op
    otherwise)."""
    _call("memprof_mark")(label.encode())


def step() -> int:
    """Record the start of a step of a training or request loop (and so the end of the
    one before) in the event log of a window in log mode; returns the step's number,
    from 1. Call it at the top of each iteration, and once after the last so that the
    last step has an end: step N is then the N-th iteration."""
    return int(_call("memprof_step")())


def heap_bytes(heap: str = "host") -> HeapBytes:
    """Live bytes of a heap and their peak in the open (or last) window."""
    query = _call("memprof_heap_bytes")
    if heap not in HEAPS:
        raise CaptureError(f"unknown heap {heap!r}: one of {', '.join(HEAPS)}")
    with _buffers:
        if query(heap.encode(), _counts, _counts + 1) == 0:
            return HeapBytes(_counts[0], _counts[1])
    raise CaptureError(f"the sampler knows no heap {heap!r}: update the mem_profiler package")


class Capture:
    """What capture() yields: while the block runs, the window's live and peak bytes so
    far; after it, their final values, the files and a report."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self._final: dict[str, HeapBytes] | None = None

    def bytes_of(self, heap: str = "host") -> HeapBytes:
        """(live, peak) bytes of one heap in the window."""
        return heap_bytes(heap) if self._final is None else self._final[heap]

    @property
    def peak_bytes(self) -> int:
        """The most host-heap bytes live at once inside the block (exact at rate 1)."""
        return self.bytes_of().peak

    @property
    def live_bytes(self) -> int:
        """Host-heap bytes allocated inside the block and still live (at its end)."""
        return self.bytes_of().live

    def report(
        self, index: str = "inuse_space", heap: str = "host", nodecount: int | None = 20
    ) -> str:
        """The window as mem_parser's text table (`index`: inuse_space, inuse_objects,
        alloc_space, alloc_objects), symbolized against this process's own binaries."""
        # numpy: the report's alone
        from mem_profiler.parser.pipeline import text_table
        from mem_profiler.parser.report.request import Request

        if heap not in self.files:
            raise CaptureError(
                "the report is ready when the with block has ended"
                if not self.files
                else f"the window did not use the {heap} heap"
            )
        request = Request(heap_file=os.fspath(self.files[heap]), index=index, nodecount=nodecount)
        return text_table(request)


@contextlib.contextmanager
def capture(
    rate: int = 1, output: str | None = None, depth: int = defaults.DEPTH
) -> Iterator[Capture]:
    """A window around the block; by default every allocation is recorded (rate 1) and
    the files go to a new temporary folder, removed as the process exits (`output`: a
    path prefix instead, whose files stay)."""
    folder = tempfile.mkdtemp(prefix="mem_profiler_") if output is None else None
    try:
        start(rate, output or f"{folder}/", depth)
    except BaseException:  # no window: no folder either
        if folder:
            os.rmdir(folder)
        raise
    if folder:
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    cap = Capture()
    try:
        yield cap
    finally:
        cap._final = {heap: heap_bytes(heap) for heap in HEAPS}
        cap.files = {heap: Path(path) for heap, path in window_files(stop()).items()}
