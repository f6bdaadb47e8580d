"""On-disk cache of per-object symbol data (numpy arrays), keyed by build-id."""

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


def _entry(build_id: str, kind: str) -> Path:
    return cache_dir() / f"{build_id}.{kind}.v{_FORMAT}.npz"


def load(build_id: str, kind: str) -> dict[str, np.ndarray] | None:
    """The arrays saved for (build_id, kind), or None if absent or unreadable."""
    try:
        with np.load(_entry(build_id, kind), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None  # absent or corrupt: the caller rebuilds it


def save(build_id: str, kind: str, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays atomically; a cache that cannot be written is silently skipped."""
    target = _entry(build_id, kind)
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


def unpack_strings(blob: np.ndarray, count: int) -> list[str]:
    """Inverse of pack_strings."""
    if count == 0:
        return []
    return blob.tobytes().decode("utf-8", "surrogateescape").split("\0")
