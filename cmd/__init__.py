"""Command-line programs: thin wrappers over mem_profiler and mem_profiler.parser."""
