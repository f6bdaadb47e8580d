"""The heaps a capture writes, one `.heap` file each, in the sampler's order (enum
memprof_heap in sampler/memprof_internal.h): the one home of their names, imported by
the parser and by the light command lines alike (it imports nothing)."""

HEAPS = ("host", "cuda", "cuda_host", "acl", "acl_host", "hal")
