"""The heaps a capture writes, one `.heap` file each, in the sampler's order (enum
memprof_heap in sampler/base/common.h): the one home of their names and colours,
imported by the parser and by the light command lines alike (it imports nothing)."""

HEAPS = ("host", "cuda", "cuda_host", "acl", "acl_host", "hal", "cuda_segments")

# Reports draw each heap in colours of its own, so device memory never passes for host
# memory. The call graph and the flame graph shade a heap's frames by weight in its hue
# (degrees); the timeline draws each heap's curve in one flat colour.
HEAP_HUES = {
    "host": 10,
    "cuda": 205,
    "cuda_host": 265,
    "acl": 130,
    "acl_host": 165,
    "hal": 40,
    "cuda_segments": 185,
}
TIMELINE_COLORS = {
    "host": "#1f77b4",
    "cuda": "#2ca02c",
    "cuda_host": "#17becf",
    "acl": "#d62728",
    "acl_host": "#ff7f0e",
    "hal": "#9467bd",
    "cuda_segments": "#98df8a",
}
