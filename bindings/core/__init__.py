"""The light core every other part of mem_profiler imports, and which imports nothing of
theirs (only the standard library): the profile model, capture file names, heaps,
memory maps, the errors a user can cause, units, escaping and the version."""
