"""mem_profiler: a sampling heap profiler for Linux.

The package root holds the bindings to the preloaded sampler (`libmemprof.so`);
`mem_profiler.parser` reads and reports `.heap` files, `mem_profiler.cmd` holds
the command-line programs.
"""

from mem_profiler.sampler_lib import SamplerNotBuilt, library_path

__version__ = "0.1.0"
__all__ = ["SamplerNotBuilt", "library_path", "__version__"]
