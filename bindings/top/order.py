"""The orders of `mem_profiler top`'s stacks: bytes in use, allocated per second, growth
of in use per second. Apart from top/stacks.py, which sorts by them, so that the
command line can offer them without importing numpy."""

SORT_KEYS = ("inuse", "alloc", "growth")
