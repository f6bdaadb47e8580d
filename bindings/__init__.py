"""mem_profiler: a sampling heap profiler for Linux.

The package root holds the bindings to the preloaded sampler (`libmemprof.so`) and the
in-process API (start, stop, dump, mark, step, capture); `mem_profiler.parser` reads
and reports `.heap` files, `mem_profiler.cmd` holds the command-line programs.
"""

import importlib
from typing import Any

from mem_profiler.core.version import VERSION as __version__

# Names served from their modules on first use (PEP 562): importing the package, as
# every command line does, loads neither cffi nor the sampler.
_LAZY = {
    name: "mem_profiler.api"
    for name in (
        "Capture",
        "CaptureError",
        "MarksUnavailable",
        "SamplerNotLoaded",
        "capture",
        "dump",
        "heap_bytes",
        "is_capturing",
        "mark",
        "start",
        "step",
        "stop",
    )
}
_LAZY.update(
    SamplerNotBuilt="mem_profiler.control.sampler_lib",
    library_path="mem_profiler.control.sampler_lib",
)


# Any, not object: to a type checker, a module's __getattr__ gives the type of every name
# it serves, and the names are used (called, caught, subclassed) as what they are.
def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mem_profiler' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = [
    "Capture",
    "CaptureError",
    "MarksUnavailable",
    "SamplerNotBuilt",
    "SamplerNotLoaded",
    "__version__",
    "capture",
    "dump",
    "heap_bytes",
    "is_capturing",
    "library_path",
    "mark",
    "start",
    "step",
    "stop",
]
