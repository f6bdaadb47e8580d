"""On-disk cache of per-object symbol data (numpy arrays), keyed by build-id and the
owner of the file the data was read from."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from mem_profiler.parser.atomic import atomic_open

_FORMAT = 3  # bump when the layout of cached arrays changes


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
    return cache_dir() / f"{key}.{kind}.v{_FORMAT}.npz"


def load(key: str, kind: str) -> dict[str, np.ndarray] | None:
    """The arrays saved for (key, kind), or None if absent or unreadable."""
    try:
        with np.load(_entry(key, kind), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None  # absent or corrupt: the caller rebuilds it


def save(key: str, kind: str, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays atomically; a cache that cannot be written is silently skipped."""
    target = _entry(key, kind)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target, "wb") as f:
            # mypy lets **arrays fill savez's allow_pickle (a bool) too: no name is that.
            # Passing allow_pickle would save an array of that name with numpy 1.x,
            # whose savez has no such parameter.
            np.savez(f, **arrays)  # type: ignore[arg-type]
    except OSError:
        pass


def pack_strings(strings: list[str]) -> np.ndarray:
    """Strings as one NUL-separated uint8 array (compact, no pickling)."""
    blob = "\0".join(strings).encode("utf-8", "surrogateescape")
    return np.frombuffer(blob, dtype=np.uint8)


def pack_spans(text: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The strings text[starts[i]:ends[i]] as pack_strings packs them, none decoded."""
    spans = zip(starts.tolist(), ends.tolist(), strict=True)
    return np.frombuffer(b"\0".join(text[start:end] for start, end in spans), np.uint8)


def unpack_spans(blob: np.ndarray, count: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Where each of the `count` strings packed in `blob` lies, none decoded: (text,
    starts, ends); ValueError if it holds another number of them."""
    text = blob.tobytes()
    if count == 0 and not text:
        return text, np.zeros(0, np.int64), np.zeros(0, np.int64)
    cuts = np.flatnonzero(blob == 0)
    if len(cuts) + 1 != count:
        raise ValueError(f"{len(cuts) + 1} strings where {count} were packed")
    return text, np.r_[0, cuts + 1], np.r_[cuts, len(text)]


def unpack_strings(blob: np.ndarray, count: int) -> list[str]:
    """Inverse of pack_strings."""
    if count == 0:
        return []
    return blob.tobytes().decode("utf-8", "surrogateescape").split("\0")
