"""What a capture takes when it is not told otherwise: the one home of these values on the
Python side (the command lines, the API, launching, the gate). The sampler's own defaults,
for a program started without mem_profiler, are the same values in C
(sampler/memprof_internal.h, sampler/capture.c); a test compares them."""

DEFAULT_RATE = 1024               # mean bytes between samples of the host heap
DEFAULT_DEVICE_RATE = 1           # of the device and HAL heaps: every allocation
DEFAULT_DEPTH = 64                # frames kept per stack
MAX_DEPTH = 128                   # the sampler's largest stack
DEFAULT_PREFIX = "./custom_profiler_"
DEFAULT_LOG_FILE_BYTES = 100 << 20   # log mode: bytes per event log file
DEFAULT_LOG_FILES = 10               # log mode: event log files kept
