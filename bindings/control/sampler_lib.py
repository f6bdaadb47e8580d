"""Where `libmemprof.so` is, and the environment that preloads it."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # mem_profiler, beside libmemprof.so


class SamplerNotBuilt(RuntimeError):
    """libmemprof.so is neither installed with the package nor built in the checkout."""


def library_path() -> Path:
    """Path of libmemprof.so: $MEMPROF_LIB, the installed copy, or the checkout's build."""
    candidates = []
    if os.environ.get("MEMPROF_LIB"):
        candidates.append(Path(os.environ["MEMPROF_LIB"]))
    candidates += [_PACKAGE_DIR / "libmemprof.so", _PACKAGE_DIR.parent / "build" / "libmemprof.so"]
    for path in candidates:
        if path.is_file():
            return path
    raise SamplerNotBuilt(
        "libmemprof.so is not built: run `make build` in the mem_profiler checkout"
    )
