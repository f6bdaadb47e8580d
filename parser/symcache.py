"""On-disk cache of per-object symbol data (numpy arrays), keyed by build-id and the
owner of the file the data was read from."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from mem_profiler.parser.atomic import atomic_open

_FORMAT = 4  # bump when the layout of cached arrays changes


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


def pack_spans(text: bytes, starts: np.ndarray, ends: np.ndarray) -> dict[str, np.ndarray]:
    """The strings text[starts[i]:ends[i]] as arrays to save: the text whole and where
    each lies, so that nothing is copied string by string (a symbol table's names are
    most of the string table they lie in)."""
    return {"text": np.frombuffer(text, np.uint8), "text_starts": starts, "text_ends": ends}


def unpack_spans(arrays: dict[str, np.ndarray], count: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The (text, starts, ends) pack_spans saved, none decoded; KeyError or ValueError
    if they are not there, or are not `count` strings inside their text."""
    text = arrays["text"].tobytes()
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
