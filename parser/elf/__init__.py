"""The program's objects: ELF images (symbols, segments, build-ids, DWARF lines and
inlined calls), the on-disk symbol cache, and the lookup of many addresses at once in a
helper process. Knows nothing of profiles."""
