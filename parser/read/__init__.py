"""Files in: the readers of `.heap` files (ours, jemalloc's heap_v2, gperftools' and Go's
legacy text, pprof's profile.proto) and of the `.memlog` event log, each into the core's
HeapProfile; the calling-context tree they share; which files a capture's prefix means."""
