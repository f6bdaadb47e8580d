"""mem_profiler: a sampling heap profiler for Linux.

The package root holds the bindings to the preloaded sampler (`libmemprof.so`) and the
in-process API (start, stop, dump, mark, step, capture); `mem_profiler.parser` reads
and reports `.heap` files, `mem_profiler.cmd` holds the command-line programs.
"""

from mem_profiler.api import (
    Capture,
    CaptureError,
    MarksUnavailable,
    SamplerNotLoaded,
    capture,
    dump,
    heap_bytes,
    is_capturing,
    mark,
    start,
    step,
    stop,
)
from mem_profiler.sampler_lib import SamplerNotBuilt, library_path

__version__ = "0.1.0"
__all__ = ["Capture", "CaptureError", "MarksUnavailable", "SamplerNotBuilt", "SamplerNotLoaded",
           "__version__", "capture", "dump", "heap_bytes", "is_capturing", "library_path", "mark",
           "start", "step", "stop"]
