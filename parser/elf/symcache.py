"""On-disk cache of per-object symbol data (numpy arrays), keyed by build-id and the
owner of the file the data was read from.

An entry is one file: a line naming the format, a JSON list of the arrays (name, dtype,
shape), then each array's bytes in that order, every one at a multiple of 64 bytes. No
zip: a symbol table's names are tens of megabytes, which npz's CRC-32 took a third as
long again to check on every read as to read."""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path

import numpy as np

from mem_profiler.core.input_files import open_regular
from mem_profiler.parser.common.atomic import atomic_open

_FORMAT = 6  # bump when the layout of cached arrays, or what they hold, changes
_MAGIC = b"mem_profiler symbols\n"
_ALIGN = 64


def cache_dir() -> Path:
    """$MEMPROF_CACHE_DIR, else $XDG_CACHE_HOME/mem_profiler/symbols, else ~/.cache/..."""
    if os.environ.get("MEMPROF_CACHE_DIR"):
        return Path(os.environ["MEMPROF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mem_profiler" / "symbols"


def key(build_id: str | None, source: str | None) -> str | None:
    """The cache's name for the symbols read from `source`, an object of build-id
    `build_id`; None (not cached) without either. A build-id is only what the file says
    of itself: with the owner's uid beside it, a file that copies another user's (or
    root's) build-id never gives that user's reports its names."""
    if not build_id or source is None:
        return None
    try:
        return f"{build_id}.u{os.stat(source).st_uid}"
    except OSError:
        return None


def _entry(key: str, kind: str) -> Path:
    return cache_dir() / f"{key}.{kind}.v{_FORMAT}.arrays"


def _padding(at: int) -> int:
    return -at % _ALIGN


def load(key: str, kind: str) -> dict[str, np.ndarray] | None:
    """The arrays saved for (key, kind), or None if absent or unreadable."""
    return read_arrays(_entry(key, kind))


def save(key: str, kind: str, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays atomically; a cache that cannot be written is silently skipped."""
    target = _entry(key, kind)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_arrays(target, arrays)
    except OSError:
        pass


def read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of one entry (writable: their pages are the file's until written), or
    None if it is absent, damaged or no regular file (a FIFO there is not waited on).
    The file is mapped, not read: a large library's table is tens of megabytes, of which
    a profile's lookups touch a few pages (an entry is replaced by a rename, never
    rewritten in place, so a mapping keeps the file it was made of)."""
    try:
        with open_regular(str(path), "a symbol cache entry", OSError) as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return None
            data = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        if not data[: len(_MAGIC)] == _MAGIC:
            return None
        end = data.find(b"\n", len(_MAGIC))
        if end < 0:
            return None
        at = end + 1 + _padding(end + 1)
        arrays = {}
        for name, dtype, shape in json.loads(data[len(_MAGIC) : end]):
            kind = np.dtype(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            if kind.hasobject or count < 0:
                return None
            if at + count * kind.itemsize > size:
                return None
            arrays[str(name)] = np.frombuffer(data, kind, count, at).reshape(shape)
            at += count * kind.itemsize
            at += _padding(at)
        return arrays
    except (OSError, ValueError, TypeError):  # json's errors are ValueErrors
        return None


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """One entry, written under a temporary name and renamed into place."""
    listed = [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()]
    head = _MAGIC + json.dumps(listed).encode() + b"\n"
    with atomic_open(path, "wb", special_in_place=False) as f:  # a FIFO there is replaced
        f.write(head + bytes(_padding(len(head))))
        for a in arrays.values():
            f.write(np.ascontiguousarray(a).data)
            f.write(bytes(_padding(a.nbytes)))


def pack_strings(strings: list[str]) -> np.ndarray:
    """Strings as one NUL-separated uint8 array (compact, no pickling)."""
    blob = "\0".join(strings).encode("utf-8", "surrogateescape")
    return np.frombuffer(blob, dtype=np.uint8)


def pack_spans(
    text: bytes | memoryview, starts: np.ndarray, ends: np.ndarray
) -> dict[str, np.ndarray]:
    """The strings text[starts[i]:ends[i]] as arrays to save: the text whole and where
    each lies, so that nothing is copied string by string (a symbol table's names are
    most of the string table they lie in)."""
    return {"text": np.frombuffer(text, np.uint8), "text_starts": starts, "text_ends": ends}


def unpack_spans(
    arrays: dict[str, np.ndarray], count: int
) -> tuple[memoryview, np.ndarray, np.ndarray]:
    """The (text, starts, ends) pack_spans saved, none decoded; KeyError or ValueError
    if they are not there, or are not `count` strings inside their text."""
    text = arrays["text"].data.cast("B")  # left where it is: names decoded one by one
    starts = arrays["text_starts"].astype(np.int64)
    ends = arrays["text_ends"].astype(np.int64)
    if len(starts) != count or len(ends) != count:
        raise ValueError(f"{len(starts)} strings where {count} were packed")
    if count and (
        int(starts.min()) < 0 or bool((ends < starts).any()) or int(ends.max()) > len(text)
    ):
        raise ValueError("a string outside the text it was packed with")
    return text, starts, ends


def unpack_strings(blob: np.ndarray, count: int) -> list[str]:
    """Inverse of pack_strings."""
    if count == 0:
        return []
    return blob.tobytes().decode("utf-8", "surrogateescape").split("\0")
